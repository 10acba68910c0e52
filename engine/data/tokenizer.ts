// The model folder's own tokenizer: tokenizer.json through
// @huggingface/tokenizers, special tokens from tokenizer_config.json, EOS and
// pad ids from there or generation_config.json / config.json, and the chat
// template (template.ts).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from '../model/errors.ts';
import { ChatTemplate, FALLBACK_CHAT_TEMPLATE } from './template.ts';
import { checkModelFolder } from '../model/folder.ts';
import type { ChatMessage } from './formats.ts';

export class ModelTokenizer {
  private constructor(
    readonly dir: string,
    private readonly tokenizer: Tokenizer,
    readonly chatTemplate: ChatTemplate,
    readonly bosTokenId: number | null,
    /** The token that ends a completion or text example. */
    readonly eosTokenId: number | null,
    /** Pads batches; the tokenizer's pad token, else generation_config's, else EOS, else 0. */
    readonly padTokenId: number,
    /** Whether encoding plain text with special tokens puts BOS first (the tokenizer's post-processor). */
    readonly addsBos: boolean,
    /** Largest token id the tokenizer can produce, plus one. */
    readonly vocabSize: number,
  ) {}

  static async load(modelDir: string): Promise<ModelTokenizer> {
    const dir = await checkModelFolder(modelDir);
    const tokenizerFile = path.join(dir, 'tokenizer.json');
    const tokenizerJson = await readJson(tokenizerFile, true);
    const config = (await readJson(path.join(dir, 'tokenizer_config.json'), false)) ?? {};
    const generation = (await readJson(path.join(dir, 'generation_config.json'), false)) ?? {};
    const modelConfig = (await readJson(path.join(dir, 'config.json'), false)) ?? {};
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokenizerJson!, config);
    } catch (e) {
      throw new ModelLoadError(`${tokenizerFile}: the tokenizer cannot be loaded (${(e as Error).message})`, tokenizerFile);
    }
    const tokenText = (key: string): string | null => {
      const v = config[key];
      if (typeof v === 'string') return v;
      if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
      return null;
    };
    const idOf = (token: string | null): number | null => (token === null ? null : (tokenizer.token_to_id(token) ?? null));
    const firstId = (v: unknown): number | null => {
      const x = Array.isArray(v) ? v[0] : v;
      return typeof x === 'number' && Number.isInteger(x) ? x : null;
    };
    const bos = tokenText('bos_token');
    const eos = tokenText('eos_token');
    const bosTokenId = idOf(bos) ?? firstId(generation['bos_token_id']) ?? firstId(modelConfig['bos_token_id']);
    const eosTokenId = idOf(eos) ?? firstId(generation['eos_token_id']) ?? firstId(modelConfig['eos_token_id']);
    const padTokenId = idOf(tokenText('pad_token')) ?? firstId(generation['pad_token_id']) ?? eosTokenId ?? 0;

    let source = chatTemplateOf(config['chat_template']);
    if (source === null) source = await readFile(path.join(dir, 'chat_template.jinja'), 'utf8').catch(() => null);
    let template: ChatTemplate;
    try {
      template = new ChatTemplate(
        source ?? FALLBACK_CHAT_TEMPLATE,
        { bos_token: bos, eos_token: eos, pad_token: tokenText('pad_token'), unk_token: tokenText('unk_token') },
        source === null,
      );
    } catch (e) {
      throw new ModelLoadError(`${dir}: the chat template cannot be parsed (${(e as Error).message})`, dir, 'chat_template');
    }
    const probe = tokenizer.encode('a', { add_special_tokens: true }).ids;
    const addsBos = bosTokenId !== null && probe[0] === bosTokenId;
    let vocabSize = 0;
    for (const id of tokenizer.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
    return new ModelTokenizer(dir, tokenizer, template, bosTokenId, eosTokenId, padTokenId, addsBos, vocabSize);
  }

  /** Token ids of `text`; special-token strings in it become their tokens. No BOS/EOS unless addSpecialTokens. */
  encode(text: string, addSpecialTokens = false): number[] {
    if (text === '') return addSpecialTokens && this.addsBos ? [this.bosTokenId!] : [];
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Token ids of a conversation rendered by the chat template with the assistant turn opened, ready to generate from. */
  encodeChatPrompt(messages: readonly ChatMessage[]): number[] {
    return this.encode(this.chatTemplate.render(messages, { addGenerationPrompt: true }), false);
  }

  decode(ids: ArrayLike<number>, skipSpecialTokens = false): string {
    return this.tokenizer.decode(Array.from(ids), { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | null {
    return this.tokenizer.token_to_id(token) ?? null;
  }
}

function chatTemplateOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  // Several named templates: [{name, template}]; the default one is for chat.
  if (Array.isArray(v)) {
    const named = v.find((t) => t && typeof t === 'object' && (t as { name?: unknown }).name === 'default');
    if (named && typeof (named as { template?: unknown }).template === 'string') return (named as { template: string }).template;
  }
  return null;
}

async function readJson(file: string, required: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    if (required) throw new ModelLoadError(`${file}: missing; the model folder needs its tokenizer.json to tokenize training data`, file);
    return null;
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new ModelLoadError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
}
