// What the client reads of its tokens (unverified: the server verifies them): their expiry, to
// refresh them, and their room claims, to know what to attempt.

/** The claims of a JWT, unverified (the server verifies them): {} when it has none to read. */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1];
    const claims = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=')));
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

/** The exp claim of a JWT, in ms since the epoch, or 0. */
export function tokenExpiry(token) {
  const exp = tokenClaims(token).exp;
  return typeof exp === 'number' ? exp * 1000 : 0;
}

/** Whether a room pattern of a token's claims (a name, or a prefix ending in *) matches room. */
export function matchRoom(pattern, room) {
  if (typeof pattern !== 'string') return false;
  return pattern.endsWith('*') ? room.startsWith(pattern.slice(0, -1)) : pattern === room;
}

export const matchAny = (patterns, room) => Array.isArray(patterns) && patterns.some((p) => matchRoom(p, room));

