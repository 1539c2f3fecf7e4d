// Turns a stored request/response body (Responses API or Chat Completions) into chat messages to show.

export interface ChatMessage {
  role: string;
  kind: 'text' | 'tool_call' | 'tool_result';
  text: string;
  name?: string;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => {
        if (typeof part === 'string') return part;
        const p = part as Record<string, unknown>;
        if (typeof p.text === 'string') return p.text;
        if (typeof p.refusal === 'string') return `[refusal] ${p.refusal}`;
        if (p.type === 'input_image' || p.type === 'image_url') return '[image]';
        if (p.type === 'input_file' || p.type === 'file') return '[file]';
        if (p.type === 'input_audio') return '[audio]';
        return `[${String(p.type ?? 'part')}]`;
      })
      .join('\n');
  }
  if (content === null || content === undefined) return '';
  return JSON.stringify(content);
}

function itemMessages(item: unknown): ChatMessage[] {
  if (typeof item === 'string') return [{ role: 'user', kind: 'text', text: item }];
  const it = item as Record<string, unknown>;
  const type = it.type as string | undefined;
  if (type === 'function_call' || type === 'custom_tool_call') {
    return [{ role: 'assistant', kind: 'tool_call', name: String(it.name ?? 'tool'), text: String(it.arguments ?? it.input ?? '') }];
  }
  if (type === 'function_call_output' || type === 'custom_tool_call_output') {
    return [{ role: 'tool', kind: 'tool_result', text: textOf(it.output) }];
  }
  if (type === 'reasoning') {
    const summary = Array.isArray(it.summary) ? textOf(it.summary) : '';
    return summary ? [{ role: 'reasoning', kind: 'text', text: summary }] : [];
  }
  if (type && type !== 'message' && !it.role) return [{ role: 'assistant', kind: 'tool_call', name: type, text: JSON.stringify(it) }];
  return [{ role: String(it.role ?? 'user'), kind: 'text', text: textOf(it.content) }];
}

/** The conversation of one exchange: instructions, input, tool calls and output, in order. */
export function conversationOf(requestBody: unknown, responseBody: unknown, outputText: string | null): ChatMessage[] {
  const out: ChatMessage[] = [];
  const req = (requestBody ?? {}) as Record<string, unknown>;
  if (typeof req.instructions === 'string' && req.instructions) out.push({ role: 'system', kind: 'text', text: req.instructions });
  if (typeof req.input === 'string') out.push({ role: 'user', kind: 'text', text: req.input });
  else if (Array.isArray(req.input)) for (const item of req.input) out.push(...itemMessages(item));
  if (Array.isArray(req.messages)) {
    for (const m of req.messages as Record<string, unknown>[]) {
      if (m.role === 'tool') out.push({ role: 'tool', kind: 'tool_result', text: textOf(m.content) });
      else if (m.content !== null && m.content !== undefined && textOf(m.content)) out.push({ role: String(m.role), kind: 'text', text: textOf(m.content) });
      for (const call of (m.tool_calls as Record<string, any>[] | undefined) ?? []) {
        out.push({ role: 'assistant', kind: 'tool_call', name: String(call.function?.name ?? 'tool'), text: String(call.function?.arguments ?? '') });
      }
    }
  }
  const inputCount = out.length;
  const res = (responseBody ?? {}) as Record<string, unknown>;
  if (Array.isArray(res.output)) for (const item of res.output) out.push(...itemMessages(item));
  if (Array.isArray(res.choices)) {
    const msg = (res.choices[0] as Record<string, any> | undefined)?.message;
    if (msg) {
      if (msg.content) out.push({ role: 'assistant', kind: 'text', text: textOf(msg.content) });
      for (const call of msg.tool_calls ?? []) out.push({ role: 'assistant', kind: 'tool_call', name: String(call.function?.name ?? 'tool'), text: String(call.function?.arguments ?? '') });
    }
  }
  if (out.length === inputCount && outputText) out.push({ role: 'assistant', kind: 'text', text: outputText });
  return out;
}
