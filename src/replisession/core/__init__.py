"""The sans-IO core: sessions, deltas, ids, the store. No sockets, no clocks, no threads."""
