"""The wire: messages to bytes and back (framing, schemas, authentication). Sans-IO."""
