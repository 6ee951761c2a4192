/**
 * Text from outside (file names, request paths) made safe to print: a name holding a newline, a
 * carriage return or a terminal escape could otherwise forge lines of osteo's output or drive the
 * terminal. C0 and C1 control characters, DEL, and the Unicode line separators and bidirectional
 * overrides (which reorder what a terminal shows) are written as escapes, as JSON spells them.
 */
const unprintable = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

export function printable(text: string): string {
  return text.replace(unprintable, (c) => named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Each line of `text` made printable, the line breaks kept: for a multi-line message that quotes names. */
export function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}
