// A tiny real tokenizer for tiny test models: byte-level BPE with no merges, in
// the Hugging Face tokenizer.json layout that @huggingface/tokenizers (and the
// Rust `tokenizers` crate) load.
//
// Vocabulary (TINY_VOCAB_SIZE = 272 rows; ids 266..271 are unused padding, as
// real models pad their embedding tables to a multiple of 16):
//   0..255    one token per byte; id = byte value; the token string is GPT-2's
//             printable stand-in for the byte (bytes_to_unicode), so any UTF-8
//             text round-trips: encode → bytes → decode gives the text back.
//   256..265  special tokens, see TINY_SPECIAL_TOKENS: ChatML markers, <s>/</s>
//             and the Llama-3 header tokens, so both a ChatML and a Llama-3
//             style chat template tokenize their markers to single tokens.
//
// With no merges every byte is one token: sequences are long, but the
// tokenizer is exact and tiny (a few kB).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './atomic.ts';

export const TINY_SPECIAL_TOKENS = {
  '<|endoftext|>': 256,
  '<|im_start|>': 257,
  '<|im_end|>': 258,
  '<s>': 259,
  '</s>': 260,
  '<|begin_of_text|>': 261,
  '<|end_of_text|>': 262,
  '<|start_header_id|>': 263,
  '<|end_header_id|>': 264,
  '<|eot_id|>': 265,
} as const;
export type TinySpecialToken = keyof typeof TINY_SPECIAL_TOKENS;

/** Rows of the embedding table a model using this tokenizer needs (covers ids 0..265). */
export const TINY_VOCAB_SIZE = 272;

/** ChatML, as Qwen2.5-Instruct writes it minus the tool-calling branches. */
export const CHATML_TEMPLATE =
  "{%- for message in messages %}" +
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  '{%- endfor %}' +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

export interface TinyTokenizerOptions {
  /** 'chatml' (default): no BOS, eos <|im_end|>, pad <|endoftext|>, the ChatML template.
   *  'llama3': BOS <|begin_of_text|> added by the post-processor, eos <|eot_id|>, and `chatTemplate` (required). */
  style?: 'chatml' | 'llama3';
  /** Replaces the style's chat template; null writes no chat_template. */
  chatTemplate?: string | null;
}

export interface TinyTokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
  bosTokenId: number | null;
  eosTokenId: number;
  padTokenId: number;
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others
// map to code points 256 and up, in byte order.
export function byteToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array(256);
  const set = new Set(printable);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(set.has(b) ? b : 256 + extra++);
  return table;
}

export function tinyTokenizerFiles(opts: TinyTokenizerOptions = {}): TinyTokenizerFiles {
  const style = opts.style ?? 'chatml';
  const vocab: Record<string, number> = {};
  byteToUnicode().forEach((s, b) => (vocab[s] = b));
  const addedTokens = Object.entries(TINY_SPECIAL_TOKENS).map(([content, id]) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const bos = style === 'llama3' ? '<|begin_of_text|>' : null;
  const bosId = bos === null ? null : TINY_SPECIAL_TOKENS[bos as TinySpecialToken];
  const postProcessor =
    bos === null
      ? byteLevel
      : {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [
            { SpecialToken: { id: bos, type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: bos, type_id: 1 } },
            { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
        };
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: postProcessor,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
  const eos = style === 'llama3' ? '<|eot_id|>' : '<|im_end|>';
  const pad = style === 'llama3' ? '<|end_of_text|>' : '<|endoftext|>';
  let chatTemplate: string | null = opts.chatTemplate !== undefined ? opts.chatTemplate : style === 'chatml' ? CHATML_TEMPLATE : null;
  if (style === 'llama3' && chatTemplate === null && opts.chatTemplate === undefined)
    throw new Error("tinyTokenizerFiles: style 'llama3' needs a chatTemplate");
  const addedTokensDecoder: Record<string, unknown> = {};
  for (const t of addedTokens) {
    const { id, ...rest } = t;
    addedTokensDecoder[String(id)] = rest;
  }
  const tokenizerConfig: Record<string, unknown> = {
    add_bos_token: bos !== null,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    bos_token: bos,
    clean_up_tokenization_spaces: false,
    eos_token: eos,
    model_max_length: 2048,
    pad_token: pad,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  if (chatTemplate !== null) tokenizerConfig['chat_template'] = chatTemplate;
  const eosId = TINY_SPECIAL_TOKENS[eos];
  const padId = TINY_SPECIAL_TOKENS[pad];
  const generationConfig: Record<string, unknown> = {
    bos_token_id: bosId,
    eos_token_id: style === 'llama3' ? [eosId, TINY_SPECIAL_TOKENS['<|end_of_text|>']] : [eosId, padId],
    pad_token_id: padId,
  };
  return { tokenizerJson, tokenizerConfig, generationConfig, bosTokenId: bosId, eosTokenId: eosId, padTokenId: padId };
}

/** Writes tokenizer.json and tokenizer_config.json into `dir` (generation_config.json is the caller's). */
export async function writeTinyTokenizer(dir: string, opts: TinyTokenizerOptions = {}): Promise<TinyTokenizerFiles> {
  const files = tinyTokenizerFiles(opts);
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(path.join(dir, 'tokenizer.json'), [Buffer.from(JSON.stringify(files.tokenizerJson, null, 2) + '\n')]);
  await writeFileAtomic(path.join(dir, 'tokenizer_config.json'), [Buffer.from(JSON.stringify(files.tokenizerConfig, null, 2) + '\n')]);
  return files;
}
