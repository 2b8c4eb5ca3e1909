"""Language models (PROTOCOL section 12): the byte `tokenizer`, the generated `corpus`, the embedded tiny
Llama trained on it (`embedded`), Hugging Face causal LMs (`model`, `loading`), text datasets (`data`,
`hf_datasets`), their components (`architecture`), lxt's rules for them (`lxt_rules`), physical removal of
heads and neurons (`slim`), and their plugin registration (`builtin`)."""
