/**
 * Renders a stored exchange (Responses or Chat Completions request body + output text) as one transcript.
 * Every text is inserted word for word; only the surrounding tags are ours.
 */

interface Turn {
  role: string;
  text: string;
}

export interface Conversation {
  instructions: string | null;
  turns: Turn[];
  output: string | null;
}

function partText(part: unknown): string | null {
  if (typeof part === 'string') return part;
  if (!part || typeof part !== 'object') return null;
  const p = part as Record<string, unknown>;
  if (typeof p.text === 'string') return p.text;
  if (typeof p.refusal === 'string') return p.refusal;
  switch (p.type) {
    case 'input_image':
    case 'image_url':
      return '[image]';
    case 'input_audio':
      return '[audio]';
    case 'input_file':
    case 'file':
      return typeof p.filename === 'string' ? `[file: ${p.filename}]` : '[file]';
    default:
      return null;
  }
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map(partText)
      .filter((t): t is string => t !== null)
      .join('\n');
  }
  return '';
}

function responsesTurns(input: unknown): Turn[] {
  if (typeof input === 'string') return [{ role: 'user', text: input }];
  if (!Array.isArray(input)) return [];
  const turns: Turn[] = [];
  for (const item of input) {
    if (typeof item === 'string') {
      turns.push({ role: 'user', text: item });
      continue;
    }
    if (!item || typeof item !== 'object') continue;
    const it = item as Record<string, unknown>;
    if (typeof it.role === 'string' && (it.type === undefined || it.type === 'message')) {
      turns.push({ role: it.role, text: contentText(it.content) });
    } else if (it.type === 'function_call' || it.type === 'custom_tool_call') {
      const args = typeof it.arguments === 'string' ? it.arguments : typeof it.input === 'string' ? it.input : '';
      turns.push({ role: `tool_call ${String(it.name ?? '')}`.trim(), text: args });
    } else if (it.type === 'function_call_output' || it.type === 'custom_tool_call_output') {
      turns.push({ role: 'tool_output', text: typeof it.output === 'string' ? it.output : JSON.stringify(it.output ?? null) });
    }
  }
  return turns;
}

function chatConversation(messages: unknown[]): { instructions: string | null; turns: Turn[] } {
  const system: string[] = [];
  const turns: Turn[] = [];
  for (const m of messages) {
    if (!m || typeof m !== 'object') continue;
    const msg = m as Record<string, unknown>;
    const role = typeof msg.role === 'string' ? msg.role : 'user';
    const text = contentText(msg.content);
    if (role === 'system' || role === 'developer') {
      system.push(text);
      continue;
    }
    if (role === 'tool') {
      turns.push({ role: 'tool_output', text });
      continue;
    }
    if (text) turns.push({ role, text });
    if (Array.isArray(msg.tool_calls)) {
      for (const call of msg.tool_calls as Array<Record<string, any>>) {
        const fn = call?.function ?? {};
        turns.push({ role: `tool_call ${String(fn.name ?? '')}`.trim(), text: typeof fn.arguments === 'string' ? fn.arguments : '' });
      }
    }
  }
  return { instructions: system.length ? system.join('\n\n') : null, turns };
}

export function conversationOf(requestBody: unknown, outputText: string | null): Conversation {
  const body = requestBody && typeof requestBody === 'object' ? (requestBody as Record<string, unknown>) : {};
  if (Array.isArray(body.messages)) {
    return { ...chatConversation(body.messages), output: outputText };
  }
  const instructions = typeof body.instructions === 'string' && body.instructions !== '' ? body.instructions : null;
  return { instructions, turns: responsesTurns(body.input), output: outputText };
}

export function isEmptyConversation(c: Conversation): boolean {
  return !c.instructions && !c.output && c.turns.every((t) => t.text === '');
}

export function renderConversation(c: Conversation): string {
  const parts = ['<conversation>'];
  if (c.instructions) parts.push('<instructions>', c.instructions, '</instructions>');
  for (const t of c.turns) parts.push(`<message role="${t.role}">`, t.text, '</message>');
  if (c.output) parts.push('<message role="assistant">', c.output, '</message>');
  parts.push('</conversation>');
  return parts.join('\n');
}
