"""Fast paths that know nothing of roles: int8 layers, the one decoder layer with its attention, norm and rotary
embedding, and the steps built from it (decode a token, a pass over a cached prefix)."""
