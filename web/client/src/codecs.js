// The protocol's two codecs: JSON text frames and MessagePack binary frames.
import * as msgpack from './msgpack.js';

/** The two codecs of the protocol: JSON text frames, MessagePack binary frames. */
export const CODECS = {
  json: { subprotocol: 'roomlog.v1.json', encode: (f) => JSON.stringify(f), decode: (data) => JSON.parse(data) },
  msgpack: {
    subprotocol: 'roomlog.v1.msgpack',
    encode: (f) => msgpack.encode(f),
    decode: (data) => {
      if (typeof data === 'string') throw new Error('a text frame on a MessagePack connection');
      return msgpack.decode(data);
    },
  },
};

