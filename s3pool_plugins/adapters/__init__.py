"""Adapters: thin layers that put the pool under other libraries, through their public extension points."""
