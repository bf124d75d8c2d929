"""SQL as osqueryd runs it: table facts, osquery's functions and value rules, and the engine."""
