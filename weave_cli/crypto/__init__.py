"""Pure cryptography of the mesh: the password key, the per-connection handshake, AEAD frames.

Nothing here does I/O, reads a clock or draws randomness of its own (the ephemeral private key
is passed in). ``kdf`` derives keys, ``handshake`` turns two ephemeral X25519 keys into a
``Session``, ``frames`` seals and opens frames with it, ``secret`` hides secrets from reprs.
docs/encryption.md has the full description.
"""
