// Chat templates: the model's own Jinja `chat_template` (tokenizer_config.json,
// or chat_template.jinja beside it), rendered with @huggingface/jinja with the
// variables transformers' apply_chat_template passes: messages,
// add_generation_prompt, the special tokens (bos_token, eos_token, pad_token,
// unk_token); raise_exception and strftime_now are built into the renderer.
//
// A model without a template gets FALLBACK_CHAT_TEMPLATE, ChatML:
//   <|im_start|>{role}\n{content}<|im_end|>\n   per message, then
//   <|im_start|>assistant\n                      when add_generation_prompt.
// If the model's tokenizer lacks <|im_start|>/<|im_end|> they are tokenized as
// plain text, which still trains a consistent format; the pipeline then
// appends the model's EOS after the conversation so generation can stop.
import { Template } from '@huggingface/jinja';
import type { ChatMessage } from './formats.ts';

export const FALLBACK_CHAT_TEMPLATE =
  "{%- for message in messages %}" +
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  '{%- endfor %}' +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

export interface TemplateTokens {
  bos_token?: string | null;
  eos_token?: string | null;
  pad_token?: string | null;
  unk_token?: string | null;
}

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    readonly tokens: TemplateTokens,
    /** True when the model had no template and FALLBACK_CHAT_TEMPLATE is used. */
    readonly isFallback = false,
  ) {
    this.template = new Template(source);
  }

  render(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    const context: Record<string, unknown> = {
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    };
    for (const [k, v] of Object.entries(this.tokens)) if (v !== null && v !== undefined) context[k] = v;
    return this.template.render(context);
  }
}
