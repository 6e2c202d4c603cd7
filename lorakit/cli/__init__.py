"""The `lorakit` command line over the library's functions; may import anything in lorakit except ui."""
