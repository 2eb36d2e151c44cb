"""The commands: each parses its options, calls one library function and renders."""
