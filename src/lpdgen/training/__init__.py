"""Training: the LPD trainer (single process or ``torchrun``), the token cache it reads, and the VQ
tokenizer trainer. Built on the core (model, orders) and the common helpers; nothing in the core
imports from here."""
