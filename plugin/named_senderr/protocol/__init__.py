"""Pure encoders and decoders of wire protocols: bytes in, typed values out, no sockets."""
