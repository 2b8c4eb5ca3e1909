"""Language models: a byte tokenizer, a generated corpus and the embedded tiny Llama trained on it."""
