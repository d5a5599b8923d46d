"""The researcher's side: build, push, sign, submit, watch, and fetch verified results."""
