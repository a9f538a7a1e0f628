"""How each API speaks chat: chat completions and the Responses API, side by side."""
