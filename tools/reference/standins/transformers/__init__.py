"""Stand-in for transformers.AutoTokenizer (see ../README.md): the umT5 tokenizer as the official
HuggingfaceTokenizer calls it, on SentencePiece's spiece.model."""
import os
import types

import sentencepiece
import torch


class _SentencePieceT5Tokenizer:

    def __init__(self, folder):
        self.sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(folder, 'spiece.model'))
        self.vocab_size = self.sp.get_piece_size()
        self.pad_id = max(self.sp.pad_id(), 0)
        self.eos_id = self.sp.eos_id()

    def __call__(self, texts, return_tensors='pt', padding=None, truncation=False, max_length=None,
                 add_special_tokens=True, **unused):
        if isinstance(texts, str):
            texts = [texts]
        rows = []
        for text in texts:
            ids = self.sp.encode(text)
            if truncation and max_length is not None:
                ids = ids[:max_length - 1 if add_special_tokens else max_length]
            if add_special_tokens:
                ids = ids + [self.eos_id]
            rows.append(ids)
        width = max_length if padding == 'max_length' else max(len(r) for r in rows)
        ids = torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        return types.SimpleNamespace(input_ids=ids, attention_mask=mask)


class AutoTokenizer:

    @staticmethod
    def from_pretrained(name, **kwargs):
        return _SentencePieceT5Tokenizer(name)
