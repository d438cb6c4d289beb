/**
 * Just enough PromQL reading for the dashboard and alert checks: the series selectors an expression
 * reads (`sse_runs_ended_total{status="interrupted"}`, without its range or offset), the metric
 * names among them, and the range windows it uses. A lexer and one pass over the tokens, no parser:
 * the expressions are our own, and anything it cannot place fails loudly rather than being skipped.
 */

type Token =
  | { kind: "ident"; text: string }
  | { kind: "string"; text: string }
  | { kind: "number"; text: string }
  | { kind: "punct"; text: string };

/** Words that are never metric names when not followed by `(`. */
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);
/** Followed by a parenthesised label list, not by an expression. */
const GROUPING = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "#") {
      while (i < expr.length && expr[i] !== "\n") i++;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < expr.length && expr[j] !== c) j += expr[j] === "\\" && c !== "`" ? 2 : 1;
      if (j >= expr.length) throw new Error(`unterminated string in ${JSON.stringify(expr)}`);
      tokens.push({ kind: "string", text: expr.slice(i, j + 1) });
      i = j + 1;
    } else if (/[0-9.]/.test(c)) {
      // Numbers and durations (5m, 1d, 0.25, 1e3).
      const match = /^[0-9.][0-9a-zA-Z.]*/.exec(expr.slice(i))!;
      tokens.push({ kind: "number", text: match[0] });
      i += match[0].length;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const match = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i))!;
      tokens.push({ kind: "ident", text: match[0] });
      i += match[0].length;
    } else if (c === "$") {
      throw new Error(`unsubstituted variable at ${JSON.stringify(expr.slice(i, i + 20))}`);
    } else {
      const two = expr.slice(i, i + 2);
      const text = ["==", "!=", ">=", "<=", "=~", "!~"].includes(two) ? two : c;
      tokens.push({ kind: "punct", text });
      i += text.length;
    }
  }
  return tokens;
}

/** The text of `{...}` starting at tokens[start] (a `{`), and the index after its `}`. */
function readMatchers(tokens: Token[], start: number): { text: string; next: number } {
  const parts: string[] = [];
  let i = start + 1;
  while (i < tokens.length && tokens[i]!.text !== "}") {
    const token = tokens[i]!;
    parts.push(token.text === "," ? ", " : token.text);
    i++;
  }
  if (i >= tokens.length) throw new Error("unterminated label matchers");
  return { text: `{${parts.join("")}}`, next: i + 1 };
}

/** Every series selector in `expr`, as written (name and matchers), once each, in order. */
export function seriesSelectors(expr: string): string[] {
  const tokens = tokenize(expr);
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const next = tokens[i + 1];
    if (token.kind === "ident") {
      if (GROUPING.has(token.text)) {
        // by (a, b): skip the label list.
        if (next?.text === "(") {
          while (i < tokens.length && tokens[i]!.text !== ")") i++;
        }
        continue;
      }
      // A function or aggregation: `rate(`, `sum(`, and `sum by (le) (` (an aggregation before its grouping).
      if (next?.text === "(" || (next?.kind === "ident" && GROUPING.has(next.text))) continue;
      if (KEYWORDS.has(token.text.toLowerCase())) continue;
      if (next?.text === "{") {
        const matchers = readMatchers(tokens, i + 1);
        out.push(`${token.text}${matchers.text}`);
        i = matchers.next - 1;
      } else {
        out.push(token.text);
      }
    } else if (token.text === "{") {
      const matchers = readMatchers(tokens, i);
      out.push(matchers.text);
      i = matchers.next - 1;
    } else if (token.text === "[") {
      // A range or subquery window: [5m], [1d], [5m:1m].
      while (i < tokens.length && tokens[i]!.text !== "]") i++;
    }
  }
  return [...new Set(out)];
}

/** The metric names an expression reads. */
export function metricNames(expr: string): string[] {
  return [
    ...new Set(
      seriesSelectors(expr)
        .map((selector) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(selector)?.[0])
        .filter((name): name is string => name !== undefined),
    ),
  ];
}

/** The range windows as written (`$__rate_interval`, `5m`), before any substitution. */
export function rangeWindows(expr: string): string[] {
  return [...expr.matchAll(/\[([^\]]+)\]/g)].map((match) => match[1]!.trim());
}

/** A histogram's series (`x_bucket`, `x_count`, `x_sum`) under their family's name `x`; others as they are. */
export function metricFamily(name: string): string {
  return name.replace(/_(?:bucket|count|sum)$/, "");
}
