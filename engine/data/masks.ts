// Token ids and labels of one example (labels as DESIGN.md says: same length
// as inputIds, -100 = not trained, logits[t] are scored against labels[t+1]).
//
// Chat loss masks, by prefix rendering. For assistant message i the chat
// template is rendered twice:
//   before_i = render(messages[0..i), add_generation_prompt = true)
//   after_i  = render(messages[0..i], add_generation_prompt = false)
// and the full conversation once (full = after_{last}). The characters
// full[len(before_i) .. len(after_i)) are what message i adds: its content and
// the end-of-turn marker (<|im_end|>, <|eot_id|>, </s>…); trailing whitespace
// after the marker (ChatML's "\n") is left untrained. This needs no knowledge
// of the template's syntax; it only needs each rendering to be a prefix of the
// next (checked: a template that rewrites earlier turns is refused for
// assistant-only masks, with the advice to train on everything).
//
// The full text is then cut at those character boundaries and each piece is
// tokenized on its own (no special tokens added: BOS appears only if the
// template renders it, so it is never doubled); a token belongs to exactly one
// piece, so the mask is exact. Cutting at turn boundaries can tokenize a
// boundary differently from tokenizing the whole text in one go; boundaries
// sit next to special tokens or newlines, where BPE tokenizers split anyway.
//
// Other kinds:
//   completion  [BOS if the tokenizer adds one] prompt (untrained) · completion · EOS (trained)
//   text        [BOS] text · EOS, all trained
//   tokens      input_ids and labels exactly as given (labels default to a copy of input_ids)
import { RecordProblem } from './errors.ts';
import type { ChatMessage, Example } from './formats.ts';
import type { ModelTokenizer } from './tokenizer.ts';

export type LossOn = 'assistant' | 'all' | 'last-assistant';
export const IGNORE = -100;

export interface EncodedExample {
  inputIds: number[];
  labels: number[];
}

export interface TextSpan {
  text: string;
  trained: boolean;
}

export function encodeExample(tok: ModelTokenizer, example: Example, lossOn: LossOn = 'assistant'): EncodedExample {
  switch (example.kind) {
    case 'chat':
      return encodeSpans(tok, chatSpans(tok, example.messages, lossOn), false);
    case 'completion': {
      const spans: TextSpan[] = [
        { text: example.prompt, trained: lossOn === 'all' },
        { text: example.completion, trained: true },
      ];
      return encodeSpans(tok, spans, true);
    }
    case 'text':
      return encodeSpans(tok, [{ text: example.text, trained: true }], true);
    case 'tokens':
      return { inputIds: example.inputIds.slice(), labels: (example.labels ?? example.inputIds).slice() };
  }
}

/** The rendered conversation cut into trained and untrained pieces (see the header). */
export function chatSpans(tok: ModelTokenizer, messages: readonly ChatMessage[], lossOn: LossOn): TextSpan[] {
  const template = tok.chatTemplate;
  const full = template.render(messages);
  if (lossOn === 'all') return [{ text: full, trained: true }];
  const assistants = messages.flatMap((m, i) => (m.role === 'assistant' ? [i] : []));
  const trainedTurns = lossOn === 'last-assistant' ? assistants.slice(-1) : assistants;
  const spans: TextSpan[] = [];
  let covered = 0;
  for (const i of trainedTurns) {
    const before = template.render(messages.slice(0, i), { addGenerationPrompt: true });
    const after = template.render(messages.slice(0, i + 1));
    if (!full.startsWith(before) || !full.startsWith(after) || before.length < covered || after.length < before.length)
      throw new RecordProblem(
        'the chat template renders earlier turns differently once later turns are added, so the assistant tokens cannot be located; ' +
          'train on all tokens instead',
      );
    let end = after.length;
    while (end > before.length && /\s/.test(after[end - 1]!)) end--;
    if (before.length > covered) spans.push({ text: full.slice(covered, before.length), trained: false });
    spans.push({ text: full.slice(before.length, end), trained: true });
    covered = end;
  }
  if (covered < full.length) spans.push({ text: full.slice(covered), trained: false });
  return spans;
}

// plain: a completion or text example: BOS if the tokenizer adds one, EOS at the end (trained).
function encodeSpans(tok: ModelTokenizer, spans: TextSpan[], plain: boolean): EncodedExample {
  const inputIds: number[] = [];
  const labels: number[] = [];
  if (plain && tok.addsBos) {
    inputIds.push(tok.bosTokenId!);
    labels.push(IGNORE);
  }
  for (const span of spans) {
    if (span.text === '') continue;
    for (const id of tok.encode(span.text)) {
      inputIds.push(id);
      labels.push(span.trained ? id : IGNORE);
    }
  }
  // Plain examples end with EOS; so does a conversation under the fallback
  // template when the model has no <|im_end|> token to end it.
  const eos = tok.eosTokenId;
  const needsEos = plain || (tok.chatTemplate.isFallback && tok.tokenToId('<|im_end|>') === null);
  if (needsEos && eos !== null && inputIds[inputIds.length - 1] !== eos) {
    inputIds.push(eos);
    labels.push(plain || spans.some((s) => s.trained) ? eos : IGNORE);
  }
  return { inputIds, labels };
}

/** Trained positions: labels[t] != -100 for t >= 1 (labels[0] is never scored). */
export function countTrained(labels: ArrayLike<number>): number {
  let n = 0;
  for (let t = 1; t < labels.length; t++) if (labels[t] !== IGNORE) n++;
  return n;
}
