// @ts-check
/**
 * The access token, when the gateway asks for one (a 401 on an API call or on the stream). It is kept
 * in sessionStorage (this tab, until it closes), shared with the dashboard's other tabs, and sent by
 * the client as `Authorization: Bearer` on API calls and as `access_token` on the stream URL.
 */

const TOKEN_KEY = "sse-gateway.token";

/** @returns {string | null} */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** @param {string | null} token */
export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives as long as the page
  }
}

/** Options for the client's API calls and connect(). */
export function requestOptions() {
  const token = getToken();
  return token ? { accessToken: token } : {};
}

/**
 * What to tell the user about an auth failure, or null when `error` is not one.
 * @param {unknown} error
 * @returns {{kind: "missing" | "expired" | "invalid" | "forbidden", message: string} | null}
 */
export function describeAuthError(error) {
  const e = /** @type {{status?: unknown, code?: unknown, message?: unknown}} */ (error ?? {});
  const detail = typeof e.message === "string" && e.message ? ` (${e.message})` : "";
  if (e.status === 401) {
    if (e.code === "token_expired") {
      return { kind: "expired", message: "Your access token has expired. Enter a new one to continue." };
    }
    if (e.code === "invalid_token" || getToken()) {
      return {
        kind: "invalid",
        message: `The gateway did not accept the access token${detail}. Enter another one.`,
      };
    }
    return { kind: "missing", message: "This gateway needs an access token. Enter it to see the agents." };
  }
  if (e.status === 403) {
    return { kind: "forbidden", message: `The access token is not allowed to do this${detail}.` };
  }
  return null;
}
