// The errors the client returns: the server's error frames, and publishes whose delivery is
// uncertain.

/** Codes a request may succeed with if sent again unchanged. */
const TEMPORARY = new Set(['rate_limited', 'internal', 'unavailable']);

/** An error frame from the server. */
export class RoomlogError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string} [head]
   */
  constructor(code, message, head) {
    super(`roomlog: ${code}: ${message}`);
    this.name = 'RoomlogError';
    this.code = code;
    this.head = head;
  }

  /** Whether sending the request again may succeed. */
  get temporary() {
    return TEMPORARY.has(this.code);
  }
}

/**
 * Thrown for a publish the client stopped resending because it is older than the server's key
 * retention: it may be in the log or not (see the onUncertain option).
 */
export class DeliveryUncertainError extends Error {
  /** @param {import('./index.js').Outgoing} entry */
  constructor(entry) {
    super(`roomlog: delivery uncertain: publish ${entry.key} to ${entry.room} is older than the server's key retention`);
    this.name = 'DeliveryUncertainError';
    this.entry = entry;
  }
}

