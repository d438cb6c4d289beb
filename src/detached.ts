/**
 * A copy of a short string cut out of a larger text (a request's query, a read reply, a notice) that
 * does not keep that text alive. V8 represents a `slice` of 13 or more characters as a view into its
 * parent; concatenating first makes it slice a small, fresh flat copy instead. For strings held as
 * long as a connection lives: session ids and positions.
 */
export function detached(text: string): string {
  return ` ${text}`.slice(1);
}
