// Dataset record formats: detection, validation, and conversion to one of four
// example kinds the tokenizer stage understands.
//
//   format              record (one JSONL line, JSON array item or CSV row)          example kind
//   chat                {"messages": [{"role": "system"|"user"|"assistant", "content"}]} chat
//   sharegpt            {"conversations": [{"from": "system"|"human"|"gpt", "value"}]}  chat
//   alpaca              {"instruction", "input"?, "output", "system"?}                 chat (user = instruction
//                                                                                       + "\n\n" + input)
//   prompt-completion   {"prompt", "completion"}                                       completion (plain text)
//   text                {"text"}                                                       text
//   tokens              {"input_ids": [..], "labels"?: [.., -100, ..]}                 tokens (used as given)
//   txt                 a plain text file, cut into windows of the sequence length     (see pipeline.ts)
//   csv                 a CSV/TSV file; its columns are mapped onto one of the record formats above
//
// Detection (detectRecordFormat) looks at the keys of the first record, in
// this order: messages → chat, conversations → sharegpt, input_ids → tokens,
// instruction+output → alpaca, prompt+completion → prompt-completion,
// text → text.
import { RecordProblem } from './errors.ts';

export type RecordFormat = 'chat' | 'sharegpt' | 'alpaca' | 'prompt-completion' | 'text' | 'tokens';
export type DataFormat = RecordFormat | 'txt' | 'csv';
export const RECORD_FORMATS: readonly RecordFormat[] = ['chat', 'sharegpt', 'alpaca', 'prompt-completion', 'text', 'tokens'];
export const DATA_FORMATS: readonly DataFormat[] = [...RECORD_FORMATS, 'txt', 'csv'];

export type Role = 'system' | 'user' | 'assistant';
export interface ChatMessage {
  role: Role;
  content: string;
}

export type Example =
  | { kind: 'chat'; messages: ChatMessage[] }
  | { kind: 'completion'; prompt: string; completion: string }
  | { kind: 'text'; text: string }
  | { kind: 'tokens'; inputIds: number[]; labels: number[] | null };

export function detectRecordFormat(record: unknown): RecordFormat | null {
  if (!isObject(record)) return null;
  const has = (k: string) => Object.prototype.hasOwnProperty.call(record, k);
  if (has('messages')) return 'chat';
  if (has('conversations')) return 'sharegpt';
  if (has('input_ids')) return 'tokens';
  if (has('instruction') && has('output')) return 'alpaca';
  if (has('prompt') && has('completion')) return 'prompt-completion';
  if (has('text')) return 'text';
  return null;
}

export function describeKeys(record: unknown): string {
  if (Array.isArray(record)) return 'a JSON array';
  if (!isObject(record)) return `a JSON ${record === null ? 'null' : typeof record}`;
  const keys = Object.keys(record);
  return keys.length === 0 ? 'an empty object' : `keys ${keys.map((k) => JSON.stringify(k)).join(', ')}`;
}

export const FORMAT_HINT =
  'use one of: {"messages": [...]} (chat), {"conversations": [...]} (ShareGPT), {"instruction", "input", "output"} (Alpaca), ' +
  '{"prompt", "completion"}, {"text"}, {"input_ids", "labels"} (pre-tokenized)';

/** Checks one parsed record against `format` and converts it; throws RecordProblem saying what is wrong and how to fix it. */
export function toExample(format: RecordFormat, record: unknown): Example {
  if (!isObject(record)) throw new RecordProblem(`expected a JSON object, found ${describeKeys(record)}`);
  switch (format) {
    case 'chat': {
      const list = record['messages'];
      if (!Array.isArray(list)) throw new RecordProblem(`"messages" must be an array of {"role", "content"} objects`);
      return { kind: 'chat', messages: checkConversation(list, 'messages', 'role', 'content', CHAT_ROLES) };
    }
    case 'sharegpt': {
      const list = record['conversations'];
      if (!Array.isArray(list)) throw new RecordProblem(`"conversations" must be an array of {"from", "value"} objects`);
      const first = list[0];
      // Some ShareGPT exports already use role/content inside "conversations".
      if (isObject(first) && 'role' in first && !('from' in first))
        return { kind: 'chat', messages: checkConversation(list, 'conversations', 'role', 'content', CHAT_ROLES) };
      return { kind: 'chat', messages: checkConversation(list, 'conversations', 'from', 'value', SHAREGPT_ROLES) };
    }
    case 'alpaca': {
      const instruction = requireString(record, 'instruction', true);
      const input = optionalString(record, 'input');
      const output = requireString(record, 'output', true);
      const system = optionalString(record, 'system');
      const messages: ChatMessage[] = [];
      if (system) messages.push({ role: 'system', content: system });
      messages.push({ role: 'user', content: input ? `${instruction}\n\n${input}` : instruction });
      messages.push({ role: 'assistant', content: output });
      return { kind: 'chat', messages };
    }
    case 'prompt-completion':
      return { kind: 'completion', prompt: requireString(record, 'prompt', false), completion: requireString(record, 'completion', true) };
    case 'text':
      return { kind: 'text', text: requireString(record, 'text', true) };
    case 'tokens': {
      const inputIds = checkIds(record['input_ids'], 'input_ids', false);
      if (inputIds.length === 0) throw new RecordProblem('"input_ids" is empty');
      let labels: number[] | null = null;
      if (record['labels'] !== undefined && record['labels'] !== null) {
        labels = checkIds(record['labels'], 'labels', true);
        if (labels.length !== inputIds.length)
          throw new RecordProblem(`"labels" has ${labels.length} values but "input_ids" has ${inputIds.length}; they must have the same length`);
      }
      return { kind: 'tokens', inputIds, labels };
    }
  }
}

const CHAT_ROLES: Record<string, Role> = { system: 'system', user: 'user', assistant: 'assistant' };
const SHAREGPT_ROLES: Record<string, Role> = {
  system: 'system',
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
};

function checkConversation(list: unknown[], field: string, roleKey: string, contentKey: string, roles: Record<string, Role>): ChatMessage[] {
  if (list.length === 0) throw new RecordProblem(`"${field}" is empty; a conversation needs at least one user and one assistant turn`);
  const messages: ChatMessage[] = [];
  list.forEach((item, i) => {
    const where = `${field}[${i}]`;
    if (!isObject(item)) throw new RecordProblem(`${where} must be an object with "${roleKey}" and "${contentKey}"`);
    const rawRole = item[roleKey];
    if (typeof rawRole !== 'string')
      throw new RecordProblem(`${where} has no "${roleKey}" string; use one of ${Object.keys(roles).join(', ')}`);
    const role = roles[rawRole];
    if (!role) throw new RecordProblem(`${where} has unknown ${roleKey} "${rawRole}"; use one of ${Object.keys(roles).join(', ')}`);
    const content = item[contentKey];
    if (typeof content !== 'string')
      throw new RecordProblem(`${where}.${contentKey} must be a string, found ${content === undefined ? 'nothing' : typeOf(content)}`);
    if (content.trim() === '') throw new RecordProblem(`${where} (${rawRole}) is an empty turn; remove it or give it text`);
    messages.push({ role, content });
  });
  if (!messages.some((m) => m.role === 'assistant'))
    throw new RecordProblem(`"${field}" has no assistant turn, so nothing would be trained; add the answer the model should give`);
  return messages;
}

function requireString(record: Record<string, unknown>, key: string, nonEmpty: boolean): string {
  const v = record[key];
  if (v === undefined) throw new RecordProblem(`missing "${key}"`);
  if (typeof v !== 'string') throw new RecordProblem(`"${key}" must be a string, found ${typeOf(v)}`);
  if (nonEmpty && v.trim() === '') throw new RecordProblem(`"${key}" is empty`);
  return v;
}

function optionalString(record: Record<string, unknown>, key: string): string {
  const v = record[key];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new RecordProblem(`"${key}" must be a string, found ${typeOf(v)}`);
  return v;
}

function checkIds(v: unknown, key: string, allowIgnore: boolean): number[] {
  if (!Array.isArray(v)) throw new RecordProblem(`"${key}" must be an array of token ids, found ${typeOf(v)}`);
  for (let i = 0; i < v.length; i++) {
    const t = v[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || (t < 0 && !(allowIgnore && t === -100)))
      throw new RecordProblem(`"${key}"[${i}] is ${JSON.stringify(t)}; token ids are integers >= 0${allowIgnore ? ' (or -100 for untrained positions)' : ''}`);
  }
  return v as number[];
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---- CSV column mappings ------------------------------------------------------

/** Record fields a CSV column can feed. */
export const CSV_TARGETS = ['text', 'prompt', 'completion', 'instruction', 'input', 'output', 'system'] as const;
export type CsvTarget = (typeof CSV_TARGETS)[number];
/** Record field → CSV column name, e.g. {prompt: 'question', completion: 'answer'}. */
export type ColumnMapping = Partial<Record<CsvTarget, string>>;

/** Parses "prompt=question,completion=answer" (the CLI's --columns) into a mapping. */
export function parseColumnMapping(spec: string | ColumnMapping): ColumnMapping {
  if (typeof spec !== 'string') return spec;
  const mapping: ColumnMapping = {};
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const target = (eq < 0 ? part : part.slice(0, eq)).trim();
    const column = (eq < 0 ? part : part.slice(eq + 1)).trim();
    if (!(CSV_TARGETS as readonly string[]).includes(target))
      throw new RecordProblem(`--columns: "${target}" is not a field; map columns onto ${CSV_TARGETS.join(', ')} (e.g. prompt=question,completion=answer)`);
    if (!column) throw new RecordProblem(`--columns: "${part}" names no column`);
    mapping[target as CsvTarget] = column;
  }
  return mapping;
}
