"""Causal LMs through the same featurize path: tiny GPT-2 / Llama models built from configs (no download).

Each model is saved with ``save_pretrained`` together with a WordLevel tokenizer trained here, once with
right padding and once with left padding, and loaded back by folder path.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from balpm.config import FeatureConfig
from balpm.errors import FeatureError
from balpm.features import Text, featurize, load_encoder, table_texts, tokenize_texts

WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "my", "friend", "asked", "what", "to", "do", "about", "rent", "job", "school", "dog", "summary", "post", "tl", "dr", "i", "am", "not", "sure", "if", "should", "leave", "or", "stay", "help", "please", "thanks"]


def _corpus() -> list[str]:
    return [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] + ["Post : Summary : \n"]


def _tokenizer(side: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(_corpus(), trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", padding_side=side)


def _model(arch: str, vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng():
        torch.manual_seed(0)
        if arch == "gpt2":
            return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                              bos_token_id=2, eos_token_id=3, pad_token_id=0))
        # widths are multiples of 64: bitsandbytes' CPU 4-bit kernels (>= 0.50) quantise in blocks of 64 inputs
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                            bos_token_id=2, eos_token_id=3, pad_token_id=0))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """{(arch, padding side): model folder}; both sides of an arch share the same weights."""
    out = {}
    for arch in ("gpt2", "llama"):
        for side in ("right", "left"):
            folder = tmp_path_factory.mktemp(f"{arch}-{side}")
            tok = _tokenizer(side)
            _model(arch, len(tok)).save_pretrained(folder)
            tok.save_pretrained(folder)
            out[(arch, side)] = folder
    return out


def _table() -> pd.DataFrame:
    rows = [
        ("p1", "my friend asked what to do about rent", "leave the job", "stay"),
        ("p2", "the cat sat on a mat", "cat on mat", "a dog sat on the cat while my friend asked for help please"),
        ("p1", "my friend asked what to do about rent", "i am not sure", "please help"),
        ("p3", "school or job i should leave or stay help", "thanks", "stay in school and not leave the job"),
        ("p4", "tl dr", "dog", "what"),
    ]
    return pd.DataFrame([{"pair_id": f"c{i}", "prompt_id": p, "prompt": q, "chosen": c, "rejected": r,
                          "split": "train", "source": "tldr"} for i, (p, q, c, r) in enumerate(rows)])


def _direct_last_token(folder: Path, texts: list[str]) -> np.ndarray:
    """Reference: each text alone (no padding), last layer, last token, straight from transformers."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = tok(text, return_tensors="pt")
            rows.append(model(**ids).last_hidden_state[0, -1].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_causal_lm_pools_last_token_for_either_padding_side(arch, tiny_models, tmp_path):
    table = _table()
    feats = {side: featurize(table, FeatureConfig(model=str(tiny_models[(arch, side)]), batch_size=4,
                                                  cache_dir=str(tmp_path / side)), progress=False)
             for side in ("right", "left")}
    assert load_encoder(str(tiny_models[(arch, "left")])).padding_side == "left"
    for f in feats.values():
        assert f.manifest["pooling"] == "last" and f.manifest["kind"] == "causal"
        dim = 32 if arch == "gpt2" else 64
        assert f.pairs_N_2_D.shape == (5, 2, dim) and f.prompts_P_D.shape == (4, dim)
        assert f.pairs_N_2_D.dtype == np.float32
    _, prompt_texts, _, pair_texts, _ = table_texts(table)
    expected = _direct_last_token(tiny_models[(arch, "right")], [t.full for t in pair_texts])
    expected_N_2_D = expected.reshape(2, 5, -1).transpose(1, 0, 2)
    for side, f in feats.items():
        np.testing.assert_allclose(f.pairs_N_2_D, expected_N_2_D, atol=2e-5, err_msg=f"{side} padding")
    expected_prompts = _direct_last_token(tiny_models[(arch, "right")], [t.full for t in prompt_texts])
    np.testing.assert_allclose(feats["left"].prompts_P_D, expected_prompts, atol=2e-5)


def test_long_prompt_keeps_whole_answer_causal(tiny_models):
    tok = load_encoder(str(tiny_models[("llama", "right")])).tokenizer
    answer = "i am not sure if i should leave or stay"
    text = Text("Post: ", " ".join(WORDS * 20), "\nSummary: " + answer)
    out = tokenize_texts(tok, [text], max_length=24)
    ids = out.ids[0]
    answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
    assert len(ids) <= 24 and out.prompts_truncated == 1 and out.answers_truncated == 0
    assert ids[-len(answer_ids):] == answer_ids
    assert ids[-len(answer_ids) - 2:-len(answer_ids)] == tok("Summary :", add_special_tokens=False)["input_ids"]
    assert len(ids) >= 24 - 1  # the prompt gets the remaining budget, not less


def test_nan_features_raise_one_line_error(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "nan-model"
    shutil.copytree(tiny_models[("gpt2", "right")], folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.transformer.ln_f.weight[0] = float("nan")
    model.save_pretrained(folder)
    with pytest.raises(FeatureError) as err:
        featurize(_table(), FeatureConfig(model=str(folder), cache_dir=str(tmp_path / "c")), progress=False)
    assert "NaN" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "c").rglob("*.npy"))  # nothing cached


def _bitsandbytes_runs_on_cpu() -> bool:
    """Independent probe: can bitsandbytes quantise a weight to 4 bits and multiply with it on this CPU?"""
    try:
        import bitsandbytes as bnb

        gen = torch.Generator().manual_seed(0)
        w, x = torch.randn(8, 16, generator=gen), torch.randn(3, 16, generator=gen)
        q, state = bnb.functional.quantize_4bit(w, quant_type="nf4")
        y = bnb.matmul_4bit(x, q.t(), quant_state=state)
        return y.shape == (3, 8) and bool(torch.isfinite(y).all())
    except Exception:  # noqa: BLE001 - any failure means "does not run here"
        return False


@pytest.mark.parametrize("flag", ["load_in_4bit", "load_in_8bit"])
def test_bitsandbytes_quantisation_runs_or_says_why(flag, tiny_models, tmp_path):
    folder = str(tiny_models[("llama", "right")])
    cfg = FeatureConfig(model=folder, cache_dir=str(tmp_path), **{flag: True})
    if _bitsandbytes_runs_on_cpu():
        quant = featurize(_table(), cfg, progress=False)
        full = featurize(_table(), FeatureConfig(model=folder, cache_dir=str(tmp_path)), progress=False)
        assert quant.pairs_N_2_D.shape == full.pairs_N_2_D.shape and np.isfinite(quant.pairs_N_2_D).all()
        assert quant.manifest["quantization"] == flag[len("load_in_"):]
        assert quant.hash != full.hash and not np.array_equal(quant.pairs_N_2_D, full.pairs_N_2_D)
        a, b = quant.pairs_N_2_D.reshape(-1), full.pairs_N_2_D.reshape(-1)
        assert np.corrcoef(a, b)[0, 1] > 0.9  # quantised weights, same model
        manifest = json.loads(Path(quant.manifest["paths"]["pairs"]).with_suffix(".json").read_text())
        assert manifest["quantization"] == quant.manifest["quantization"]
    else:
        with pytest.raises(FeatureError) as err:
            featurize(_table(), cfg, progress=False)
        assert "bitsandbytes" in str(err.value) and "\n" not in str(err.value)
