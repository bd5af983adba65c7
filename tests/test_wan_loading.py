"""Strict loading of the official file layout, written here at toy sizes in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from runtime.attention import attention
from runtime.dit import CausalWanModel, DiTConfig
from runtime.wan.checkpoint import TensorFile
from runtime.wan.components import (LongLiveConfig, LongLiveFiles, load_dit, load_longlive_components,
                                    save_merged_generator)
from runtime.wan.errors import CheckpointError
from runtime.wan.lora import LoRALinear, expected_lora_shapes, lora_targets
from runtime.wan.t5 import T5Encoder
from runtime.wan.vae import WanVAE
from tests.test_wan_t5 import write_tiny_tokenizer

TINY = LongLiveConfig.preset("tiny")


class FullAttention:
    """The simplest SelfAttentionCache: the block attends to itself, no cache, no RoPE."""

    def attend(self, layer: int, q, k, v):
        return attention(q, k, v)


def random_state(model: nn.Module, seed: int, std: float = 0.1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * std for k, v in model.state_dict().items()}


def write_weights(root: Path, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """The official layout with random tiny tensors, each file in its official format."""
    files = LongLiveFiles(root)
    files.tokenizer.mkdir(parents=True)
    files.base.parent.mkdir(parents=True)
    write_tiny_tokenizer(files.tokenizer)
    d = TINY.dit
    files.config.write_text(json.dumps({
        "_class_name": "WanModel", "_diffusers_version": "0.30.0", "model_type": "t2v",
        "dim": d.dim, "eps": d.eps, "ffn_dim": d.ffn_dim, "freq_dim": d.freq_dim, "in_dim": d.in_dim,
        "num_heads": d.num_heads, "num_layers": d.num_layers, "out_dim": d.out_dim, "text_len": d.text_len}))
    dit = CausalWanModel(d)
    base = random_state(dit, seed)
    save_file(base, str(files.wan / "diffusion_pytorch_model.safetensors"))  # present, never read
    torch.save({"generator": {f"model.{k}": v for k, v in base.items()}}, files.base)
    g = torch.Generator().manual_seed(seed + 1)
    lora = {k: torch.randn(s, generator=g) * 0.1 for k, s in expected_lora_shapes(dit, TINY.lora_rank).items()}
    torch.save({"generator_lora": lora, "critic_lora": dict(lora), "step": 700}, files.lora)
    t5 = {k: v.to(torch.bfloat16) for k, v in random_state(T5Encoder(TINY.t5), seed + 2).items()}
    torch.save(t5, files.t5)
    vae = random_state(WanVAE(TINY.vae), seed + 3)
    torch.save(vae, files.vae)
    return {"base": base, "lora": lora, "t5": t5, "vae": vae}


@pytest.fixture
def weights(tmp_path: Path):
    return tmp_path, write_weights(tmp_path)


def forward(dit: CausalWanModel, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = dit.cfg
    x = torch.randn(1, d.in_dim, 2, 4, 4, generator=g)
    ctx = torch.randn(1, d.text_len, d.text_dim, generator=g)
    p = next(dit.parameters())
    with torch.no_grad():
        return dit(x.to(p.dtype), torch.tensor([[500.0, 500.0]]), dit.text_kv(ctx.to(p.dtype)),
                   FullAttention())


# -- the real sizes, on the meta device --------------------------------------------------------

def spec_dit_keys(layers: int = 30) -> dict[str, tuple[int, ...]]:
    """Spec §1.2, written out independently of the model code."""
    D, Fd = 1536, 8960
    keys = {"patch_embedding.weight": (D, 16, 1, 2, 2), "patch_embedding.bias": (D,),
            "text_embedding.0.weight": (D, 4096), "text_embedding.0.bias": (D,),
            "text_embedding.2.weight": (D, D), "text_embedding.2.bias": (D,),
            "time_embedding.0.weight": (D, 256), "time_embedding.0.bias": (D,),
            "time_embedding.2.weight": (D, D), "time_embedding.2.bias": (D,),
            "time_projection.1.weight": (6 * D, D), "time_projection.1.bias": (6 * D,),
            "head.head.weight": (64, D), "head.head.bias": (64,), "head.modulation": (1, 2, D)}
    for n in range(layers):
        b = f"blocks.{n}."
        keys[b + "modulation"] = (1, 6, D)
        for att in ("self_attn", "cross_attn"):
            for m in "qkvo":
                keys[f"{b}{att}.{m}.weight"], keys[f"{b}{att}.{m}.bias"] = (D, D), (D,)
            keys[f"{b}{att}.norm_q.weight"] = keys[f"{b}{att}.norm_k.weight"] = (D,)
        keys[b + "norm3.weight"] = keys[b + "norm3.bias"] = (D,)
        keys[b + "ffn.0.weight"], keys[b + "ffn.0.bias"] = (Fd, D), (Fd,)
        keys[b + "ffn.2.weight"], keys[b + "ffn.2.bias"] = (D, Fd), (D,)
    return keys


def test_wan_1_3b_dit_has_the_official_825_keys():
    with torch.device("meta"):
        dit = CausalWanModel(DiTConfig.preset("wan-1.3b"))
    shapes = {k: tuple(v.shape) for k, v in dit.state_dict().items()}
    assert len(shapes) == 825
    assert sum(map(lambda s: torch.Size(s).numel(), shapes.values())) == 1_418_996_800
    assert shapes == spec_dit_keys()


def test_wan_1_3b_lora_has_600_peft_keys():
    with torch.device("meta"):
        dit = CausalWanModel(DiTConfig.preset("wan-1.3b"))
    assert len(lora_targets(dit)) == 300
    shapes = expected_lora_shapes(dit)
    assert len(shapes) == 600
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 349_962_240
    p = "base_model.model.blocks.7."
    assert shapes[p + "self_attn.q.lora_A.weight"] == (256, 1536)
    assert shapes[p + "cross_attn.o.lora_B.weight"] == (1536, 256)
    assert shapes[p + "ffn.0.lora_A.weight"] == (256, 1536)
    assert shapes[p + "ffn.0.lora_B.weight"] == (8960, 256)
    assert shapes[p + "ffn.2.lora_A.weight"] == (256, 8960)
    assert shapes[p + "ffn.2.lora_B.weight"] == (1536, 256)
    assert not any("embedding" in k or "head" in k or "projection" in k for k in shapes)


# -- loading through the public entry point ----------------------------------------------------

def test_load_components_merged_float32(weights):
    root, src = weights
    comp = load_longlive_components(root, "cpu", torch.float32, lora="merged", config=TINY)
    sd = comp.dit.state_dict()
    assert len(sd) == len(src["base"])
    assert torch.equal(sd["patch_embedding.weight"], src["base"]["patch_embedding.weight"])
    scaling = TINY.lora_alpha / TINY.lora_rank
    for target in ("blocks.0.self_attn.q", "blocks.1.ffn.2"):
        a = src["lora"][f"base_model.model.{target}.lora_A.weight"]
        b = src["lora"][f"base_model.model.{target}.lora_B.weight"]
        torch.testing.assert_close(sd[f"{target}.weight"], src["base"][f"{target}.weight"] + scaling * b @ a)
    assert torch.equal(sd["blocks.0.self_attn.q.bias"], src["base"]["blocks.0.self_attn.q.bias"])
    assert not any(p.requires_grad for p in comp.dit.parameters())
    # text encoder: tokenizer + T5 -> [B, text_len, text_dim], T5 weights exactly as stored
    assert torch.equal(comp.text_encoder.model.norm.weight, src["t5"]["norm.weight"].float())
    cond = comp.text_encoder(["a red fox", "waves crash on the shore"])
    assert cond.shape == (2, TINY.dit.text_len, TINY.dit.text_dim)
    # VAE: decoder only, weights as stored, decodes a block
    assert not hasattr(comp.vae, "encoder")
    assert torch.equal(comp.vae.decoder.conv1.weight, src["vae"]["decoder.conv1.weight"])
    assert comp.streaming_decoder().decode(torch.randn(1, 16, 3, 2, 2)).shape == (1, 3, 9, 16, 16)


def test_unmerged_lora_equals_merged_to_tolerance(weights):
    root, src = weights
    files = LongLiveFiles(root)
    merged = load_dit(TINY, files.base, files.lora, "merged", "cpu", torch.float32)
    unmerged = load_dit(TINY, files.base, files.lora, "unmerged", "cpu", torch.float32)
    plain = load_dit(TINY, files.base, None, "none", "cpu", torch.float32)
    wrapped = [m for m in unmerged.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == len(lora_targets(plain)) == 10 * TINY.dit.num_layers
    assert isinstance(unmerged.blocks[0].ffn[0], LoRALinear)
    out_m, out_u, out_p = forward(merged), forward(unmerged), forward(plain)
    torch.testing.assert_close(out_u, out_m, atol=1e-5, rtol=1e-4)
    assert (out_m - out_p).abs().max() > 1e-3  # the LoRA really changes the model


def test_bfloat16_load_casts_everything(weights):
    root, _ = weights
    comp = load_longlive_components(root, "cpu", torch.bfloat16, lora="unmerged", config=TINY)
    for module in (comp.dit, comp.text_encoder.model, comp.vae):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    lin = comp.dit.blocks[0].self_attn.q
    assert isinstance(lin, LoRALinear) and lin.lora_A.weight.dtype == torch.bfloat16
    assert forward(comp.dit).dtype == torch.bfloat16
    assert comp.text_encoder(["a cat"]).dtype == torch.bfloat16


def test_merged_generator_file_roundtrip(weights, tmp_path):
    root, _ = weights
    out = save_merged_generator(root, tmp_path / "merged.safetensors", torch.float32, config=TINY)
    (LongLiveFiles(root).lora).unlink()  # a merged file needs no lora.pt
    comp = load_longlive_components(root, "cpu", torch.float32, merged_generator=out, config=TINY)
    ref = load_dit(TINY, LongLiveFiles(root).base, None, "none", "cpu", torch.float32)
    assert not torch.equal(comp.dit.blocks[0].ffn[0].weight, ref.blocks[0].ffn[0].weight)
    # also a .pt merged file with the training code's "generator" / "model." spelling
    pt = tmp_path / "merged.pt"
    torch.save({"generator": {f"model.{k}": v for k, v in comp.dit.state_dict().items()}}, pt)
    again = load_longlive_components(root, "cpu", torch.float32, merged_generator=pt, config=TINY)
    assert torch.equal(forward(again.dit), forward(comp.dit))


def test_peft_adapter_name_spelling_and_raw_dicts_are_accepted(weights):
    root, src = weights
    files = LongLiveFiles(root)
    lora = {k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."): v
            for k, v in src["lora"].items()}
    torch.save(lora, files.lora)  # a raw dict, no "generator_lora" wrapper
    torch.save(src["base"], files.base)  # a flat state dict without the "model." prefix
    dit = load_dit(TINY, files.base, files.lora, "merged", "cpu", torch.float32)
    assert dit.blocks[0].self_attn.k.weight.shape == (TINY.dit.dim, TINY.dit.dim)


def test_legacy_non_zip_pickle_loads(tmp_path):
    vae = {"w": torch.ones(3)}
    path = tmp_path / "old.pth"
    torch.save(vae, path, _use_new_zipfile_serialization=False)
    f = TensorFile.open(path)
    assert torch.equal(f.get("w"), vae["w"])


# -- strict errors name the file, the key and what was expected --------------------------------

def error_for(root: Path, **kw) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load_longlive_components(root, "cpu", torch.float32, config=TINY, **kw)
    return info.value


def test_missing_generator_key(weights):
    root, src = weights
    files = LongLiveFiles(root)
    gen = {f"model.{k}": v for k, v in src["base"].items() if k != "blocks.1.cross_attn.norm_k.weight"}
    torch.save({"generator": gen}, files.base)
    err = error_for(root)
    assert err.file == files.base and err.key == "model.blocks.1.cross_attn.norm_k.weight"  # file's spelling
    assert "longlive_base.pt" in str(err) and f"[{TINY.dit.dim}]" in str(err) and "missing" in str(err)


def test_wrong_shape(weights):
    root, src = weights
    files = LongLiveFiles(root)
    vae = dict(src["vae"])
    vae["decoder.head.2.weight"] = torch.zeros(3, 4, 3, 3, 2)
    torch.save(vae, files.vae)
    err = error_for(root)
    assert err.file == files.vae and err.key == "decoder.head.2.weight"
    assert "[3, 4, 3, 3, 2]" in str(err) and "[3, 4, 3, 3, 3]" in str(err)


def test_unexpected_key(weights):
    root, src = weights
    files = LongLiveFiles(root)
    t5 = dict(src["t5"], **{"blocks.0.attn.q.bias": torch.zeros(32)})
    torch.save(t5, files.t5)
    err = error_for(root)
    assert err.file == files.t5 and err.key == "blocks.0.attn.q.bias" and "unexpected" in str(err)


def test_encoder_half_of_vae_file_is_verified(weights):
    root, src = weights
    vae = {k: v for k, v in src["vae"].items() if k != "encoder.conv1.bias"}
    torch.save(vae, LongLiveFiles(root).vae)
    assert error_for(root).key == "encoder.conv1.bias"


def test_missing_lora_key_is_named_in_peft_spelling(weights):
    root, src = weights
    files = LongLiveFiles(root)
    key = "base_model.model.blocks.1.ffn.2.lora_B.weight"
    torch.save({"generator_lora": {k: v for k, v in src["lora"].items() if k != key}}, files.lora)
    err = error_for(root, lora="unmerged")
    assert err.file == files.lora and err.key == key and "rank-4 LoRA" in str(err)


def test_lora_of_the_wrong_rank(weights):
    root, _ = weights
    cfg = LongLiveConfig.preset("tiny", lora_rank=8)
    with pytest.raises(CheckpointError) as info:
        load_longlive_components(root, "cpu", torch.float32, config=cfg)
    assert info.value.key.endswith("lora_A.weight") and "[8, " in str(info.value)


def test_missing_files_are_all_listed(weights):
    root, _ = weights
    files = LongLiveFiles(root)
    files.lora.unlink()
    files.vae.unlink()
    err = error_for(root)
    assert err.file == files.vae and str(files.lora) in str(err) and "REAL_MODEL.md" in str(err)


def test_config_json_must_match_the_model(weights):
    root, _ = weights
    path = LongLiveFiles(root).config
    data = json.loads(path.read_text())
    data["num_layers"] = 40
    path.write_text(json.dumps(data))
    err = error_for(root)
    assert err.file == path and err.key == "num_layers" and "40" in str(err)


def test_half_prefixed_generator_is_refused(weights):
    root, src = weights
    files = LongLiveFiles(root)
    gen = {(f"model.{k}" if i else k): v for i, (k, v) in enumerate(src["base"].items())}
    torch.save({"generator": gen}, files.base)
    err = error_for(root)
    assert err.file == files.base and "'model.'" in str(err)


def test_wrong_top_level_is_explained(weights):
    root, src = weights
    torch.save({"critic": src["base"], "step": 3}, LongLiveFiles(root).base)
    err = error_for(root)
    assert "'generator'" in str(err) and "critic" in str(err)


def test_unmerged_with_a_merged_file_is_refused(weights, tmp_path):
    root, src = weights
    path = tmp_path / "m.safetensors"
    save_file(src["base"], str(path))
    with pytest.raises(ValueError, match="already merged"):
        load_longlive_components(root, "cpu", torch.float32, lora="unmerged", merged_generator=path,
                                 config=TINY)


def test_corrupt_files_are_named(weights, tmp_path):
    root, _ = weights
    files = LongLiveFiles(root)
    files.vae.write_bytes(b"not a checkpoint")
    err = error_for(root)
    assert err.file == files.vae and "torch.load" in str(err)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="bad.safetensors: not a readable safetensors file"):
        TensorFile.open(bad)
