"""UMT5 encoder and tokenizer: official shapes, reference numerics, padding and cleaning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from runtime.wan.errors import CheckpointError
from runtime.wan.t5 import T5Config, T5Encoder, WanTextEncoder, relative_position_buckets
from runtime.wan.tokenizer import UMT5Tokenizer, clean_prompt

CORPUS = ["a red fox runs through the snowy forest", "a cat sleeps on a warm stone wall",
          "the camera pans over a city at night", "waves crash on the rocky shore"] * 20


def write_tiny_tokenizer(folder: Path) -> Path:
    """A trained Unigram tokenizer in the google/umt5-xxl layout: pad=0, </s>=1, unk=2."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "special_tokens_map.json").write_text('{"pad_token": "<pad>", "eos_token": "</s>"}')
    return folder


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    return write_tiny_tokenizer(tmp_path / "google" / "umt5-xxl")


def random_t5(cfg: T5Config, seed: int = 0, std: float = 0.3) -> T5Encoder:
    torch.manual_seed(seed)
    model = T5Encoder(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, std)
    return model


def reference_forward(model: T5Encoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Float64 T5 encoder written straight from spec §5.2, independent of the module code."""
    cfg = model.cfg
    sd = {k: v.double() for k, v in model.state_dict().items()}
    n, L = cfg.num_heads, ids.shape[1]

    def rms(x, w):
        return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + cfg.eps)

    def gelu(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    def bucket(rel):
        b = 16 if rel > 0 else 0
        a = abs(rel)
        return b + (a if a < 8 else min(15, 8 + int(math.log(a / 8) / math.log(16) * 8)))

    buckets = torch.tensor([[bucket(j - i) for j in range(L)] for i in range(L)])
    x = sd["token_embedding.weight"][ids]
    for i in range(cfg.num_layers):
        p = lambda name: sd[f"blocks.{i}.{name}.weight"]  # noqa: E731
        h = rms(x, p("norm1"))
        q, k, v = (torch.einsum("bld,ed->ble", h, p(f"attn.{m}")).unflatten(-1, (n, -1)) for m in "qkv")
        logits = torch.einsum("binc,bjnc->bnij", q, k)  # no 1/sqrt(d)
        logits = logits + sd[f"blocks.{i}.pos_embedding.embedding.weight"][buckets].permute(2, 0, 1)
        logits = logits.masked_fill(mask[:, None, None, :] == 0, -1e30)
        o = torch.einsum("bnij,bjnc->binc", logits.softmax(-1), v).flatten(2)
        x = x + o @ p("attn.o").T
        h = rms(x, p("norm2"))
        x = x + ((h @ p("ffn.fc1").T) * gelu(h @ p("ffn.gate.0").T)) @ p("ffn.fc2").T
    return rms(x, sd["norm.weight"])


def test_umt5_xxl_preset_shapes_on_meta():
    with torch.device("meta"):
        model = T5Encoder(T5Config.preset("umt5-xxl"))
    sd = model.state_dict()
    # 1 + 24 x 10 + 1 tensors. (Spec §5.2 says 218, but its own table lists 10 per layer --
    # pos_embedding included -- and its ~5.68 B parameter total needs all of them.)
    assert len(sd) == 242
    assert sum(v.numel() for v in sd.values()) == 5_680_910_336
    expected = {"token_embedding.weight": (256384, 4096), "norm.weight": (4096,)}
    for i in range(24):
        expected |= {f"blocks.{i}.norm1.weight": (4096,), f"blocks.{i}.norm2.weight": (4096,),
                     f"blocks.{i}.ffn.gate.0.weight": (10240, 4096),
                     f"blocks.{i}.ffn.fc1.weight": (10240, 4096),
                     f"blocks.{i}.ffn.fc2.weight": (4096, 10240),
                     f"blocks.{i}.pos_embedding.embedding.weight": (32, 64)}
        expected |= {f"blocks.{i}.attn.{m}.weight": (4096, 4096) for m in "qkvo"}
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected


def test_relative_position_buckets_match_spec():
    b = relative_position_buckets(300, 32, 128)  # [query, key], rel = key - query
    cases = {0: 0, 1: 17, -1: 1, 7: 23, -7: 7, 8: 24, -8: 8, -20: 10, 20: 26, 127: 31, 128: 31,
             -128: 15, -299: 15}
    for rel, bucket in cases.items():
        q = 0 if rel >= 0 else -rel
        assert b[q, q + rel].item() == bucket, rel


def test_encoder_matches_float64_reference():
    cfg = T5Config.preset("tiny")
    model = random_t5(cfg)
    ids = torch.randint(3, cfg.vocab, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, 11:] = 0
    with torch.no_grad():
        got = model(ids, mask).double()
    torch.testing.assert_close(got, reference_forward(model, ids, mask), atol=2e-4, rtol=2e-4)


def test_encoder_bf16_stays_close_to_float32():
    cfg = T5Config.preset("tiny")
    model = random_t5(cfg, std=0.15)
    ids = torch.randint(3, cfg.vocab, (1, 16))
    with torch.no_grad():
        ref = model(ids)
        got = model.to(torch.bfloat16)(ids)
    assert got.dtype == torch.bfloat16
    assert (got.float() - ref).abs().mean() / ref.abs().mean() < 0.05  # bf16 rounding, ~2%


def test_tokenizer_pads_truncates_and_appends_eos(tokenizer_dir):
    tok = UMT5Tokenizer(tokenizer_dir, seq_len=512)
    ids, mask = tok(["a red fox", "the cat " * 400])
    assert ids.shape == mask.shape == (2, 512) and ids.dtype == torch.long
    n = int(mask[0].sum())
    assert n >= 3 and ids[0, n - 1] == 1  # </s> is the last real token
    assert (ids[0, n:] == 0).all() and (mask[0, n:] == 0).all()
    assert mask[1].all() and ids[1, -1] == 1  # truncated to 512 with </s> kept


def test_prompt_cleaning_matches_reference():
    assert clean_prompt("  a\n\t fox  &amp;amp;  a cat ") == "a fox & a cat"
    assert clean_prompt("caf\u00c3\u00a9") == "caf\u00e9"  # ftfy repairs mojibake


def test_missing_tokenizer_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"umt5-xxl.tokenizer\.json: missing"):
        UMT5Tokenizer(tmp_path / "google" / "umt5-xxl")


def test_text_encoder_zeroes_padding_rows_and_ignores_padding(tokenizer_dir):
    tok = UMT5Tokenizer(tokenizer_dir, seq_len=24)
    cfg = T5Config.preset("tiny", vocab=tok.vocab_size)
    enc = WanTextEncoder(tok, random_t5(cfg))
    out = enc(["a red fox runs", "waves crash on the rocky shore at night"])
    assert out.shape == (2, 24, cfg.dim)
    _, mask = tok(["a red fox runs"])
    n = int(mask.sum())
    assert (out[0, n:] == 0).all() and (out[0, :n].abs().sum(-1) > 0).all()
    # padding keys are masked: the real rows equal an encode of the unpadded ids
    ids, _ = tok(["a red fox runs"])
    alone = enc.model(ids[:, :n])
    torch.testing.assert_close(out[0, :n], alone[0], atol=1e-5, rtol=1e-5)
