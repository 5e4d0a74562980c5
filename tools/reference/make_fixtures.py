"""Writes the tiny random checkpoints of Tests/Fixtures and what transformers computes on them.

  tiny-llama          LlamaForCausalLM, F32, GQA (8 heads / 2 kv heads), attention biases,
                      rope_theta 500000: save_pretrained's own files.
  tiny-llama-sharded  the same weights in three shards with model.safetensors.index.json.
  tiny-llava          LlavaForConditionalGeneration in the llava-hf hub layout
                      (vision_tower.vision_model.*, rope_theta, image_token_index), BF16,
                      the LLaMA vocabulary size (32064), 8 decoder layers with GQA.
  tiny-llava-saved    LlavaForConditionalGeneration exactly as transformers 5's save_pretrained
                      writes it (vision_tower.*, rope_parameters), F16, tied embeddings.
  tiny-qwen2          Qwen2ForCausalLM (q/k/v biases, no o_proj bias), F32, GQA (8 / 2),
                      rope_theta 1000000, tied embeddings, as save_pretrained writes it.

Each directory gets reference.safetensors: input_ids, the embeddings, every decoder layer's
output, the final norm's output, last-position logits and 16 greedy tokens (KV cache).

Run: python tools/reference/make_fixtures.py [NAME ...]   (all by default; see tools/reference/README.md)
"""
import json
import os
import shutil
import sys

import torch
from transformers import (CLIPVisionConfig, LlamaConfig, LlamaForCausalLM, LlavaConfig,
                          LlavaForConditionalGeneration, Qwen2Config, Qwen2ForCausalLM)
from safetensors.torch import load_file, save_file

from common import fixture_dir, randomize, record_decoder, round_to, save_reference, write_json

torch.manual_seed(0)
GREEDY_STEPS = 16


def reload(model_class, directory):
    """The reference is what transformers computes from the files as written, in fp32."""
    return model_class.from_pretrained(directory, dtype=torch.float32).eval()


def make_tiny_llama():
    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, attention_bias=True, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    model = LlamaForCausalLM(config).eval()
    randomize(model, seed=1)
    out = fixture_dir("tiny-llama")
    model.save_pretrained(out)
    model = reload(LlamaForCausalLM, out)
    input_ids = torch.tensor([[1, 17, 300, 42, 42, 7, 511, 128, 5, 99, 250, 3, 64]])
    reference = record_decoder(model, model.model, input_ids, GREEDY_STEPS, store_full_logits=True)
    save_reference(os.path.join(out, "reference.safetensors"), reference, {"source": "transformers LlamaForCausalLM"})

    sharded = fixture_dir("tiny-llama-sharded")
    model.save_pretrained(sharded, max_shard_size="150KB")
    shutil.copy(os.path.join(out, "reference.safetensors"), sharded)
    print("tiny-llama:", reference["greedy_tokens"].tolist(), "shards:", sorted(os.listdir(sharded)))


def tiny_llava_config(tie):
    text = LlamaConfig(
        vocab_size=32064, hidden_size=32, intermediate_size=96, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rms_norm_eps=1e-5, tie_word_embeddings=tie, pad_token_id=32001)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        image_size=336, patch_size=14, projection_dim=32)
    return LlavaConfig(text_config=text, vision_config=vision, image_token_index=32000,
                       vision_feature_layer=-2, vision_feature_select_strategy="default",
                       tie_word_embeddings=tie)


def hub_config_json(config):
    """config.json as llava-hf ships it: rope_theta in text_config, image_token_index."""
    text = config.text_config
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "ignore_index": -100,
        "image_token_index": config.image_token_id,
        "model_type": "llava",
        "pad_token_id": 32001,
        "projector_hidden_act": "gelu",
        "text_config": {
            "_name_or_path": "lmsys/vicuna-7b-v1.5",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size,
            "max_position_embeddings": text.max_position_embeddings,
            "model_type": "llama",
            "num_attention_heads": text.num_attention_heads,
            "num_hidden_layers": text.num_hidden_layers,
            "num_key_value_heads": text.num_key_value_heads,
            "pad_token_id": 0,
            "rms_norm_eps": text.rms_norm_eps,
            "rope_theta": 10000.0,
            "torch_dtype": "bfloat16",
            "vocab_size": text.vocab_size,
        },
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.36.0.dev0",
        "vision_config": {
            "hidden_size": config.vision_config.hidden_size,
            "image_size": config.vision_config.image_size,
            "intermediate_size": config.vision_config.intermediate_size,
            "model_type": "clip_vision_model",
            "num_attention_heads": config.vision_config.num_attention_heads,
            "num_hidden_layers": config.vision_config.num_hidden_layers,
            "patch_size": config.vision_config.patch_size,
            "projection_dim": config.vision_config.projection_dim,
            "vocab_size": 32000,
        },
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
    }


def hub_name(name):
    """transformers 5 in-memory state-dict name → llava-hf hub name."""
    renames = [("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
               ("model.vision_tower.", "vision_tower.vision_model."),
               ("model.multi_modal_projector.", "multi_modal_projector.")]
    for old, new in renames:
        if name.startswith(old):
            return new + name[len(old):]
    raise ValueError(f"unexpected tensor name {name}")


def text_input_ids():
    # BOS, then ids spread over the real vocabulary; no image token (32000): the language model alone.
    return torch.tensor([[1, 3148, 1001, 29901, 1724, 338, 445, 29973, 319, 1799, 9047, 13566, 29901, 31999]])


def make_tiny_llava():
    config = tiny_llava_config(tie=False)
    model = LlavaForConditionalGeneration(config).eval()
    randomize(model, seed=7)
    round_to(model, torch.bfloat16)
    out = fixture_dir("tiny-llava")
    state = {hub_name(k): v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(out, "config.json"), hub_config_json(config))
    model = reload(LlavaForConditionalGeneration, out)
    reference = record_decoder(model, model.model.language_model, text_input_ids(), GREEDY_STEPS, store_full_logits=False)
    save_reference(os.path.join(out, "reference.safetensors"), reference, {"source": "transformers LlavaForConditionalGeneration, text only"})
    print("tiny-llava:", reference["greedy_tokens"].tolist())


def make_tiny_llava_saved():
    config = tiny_llava_config(tie=True)
    model = LlavaForConditionalGeneration(config).eval()
    randomize(model, seed=3)
    model.tie_weights()
    round_to(model, torch.float16)
    out = fixture_dir("tiny-llava-saved")
    model.to(torch.float16).save_pretrained(out)
    model = reload(LlavaForConditionalGeneration, out)
    reference = record_decoder(model, model.model.language_model, text_input_ids(), GREEDY_STEPS, store_full_logits=False)
    save_reference(os.path.join(out, "reference.safetensors"), reference, {"source": "transformers LlavaForConditionalGeneration (tied), text only"})
    keys = sorted(load_file(os.path.join(out, "model.safetensors")).keys())
    print("tiny-llava-saved:", reference["greedy_tokens"].tolist(), "has lm_head:", any("lm_head" in k for k in keys))


def make_tiny_qwen2():
    config = Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=None, eos_token_id=2,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    model = Qwen2ForCausalLM(config).eval()
    randomize(model, seed=5)
    model.tie_weights()
    out = fixture_dir("tiny-qwen2")
    model.save_pretrained(out)
    model = reload(Qwen2ForCausalLM, out)
    assert model.model.layers[0].self_attn.q_proj.bias is not None and model.model.layers[0].self_attn.o_proj.bias is None
    input_ids = torch.tensor([[17, 300, 42, 42, 7, 511, 128, 5, 99, 250, 3, 64]])
    reference = record_decoder(model, model.model, input_ids, GREEDY_STEPS, store_full_logits=True)
    save_reference(os.path.join(out, "reference.safetensors"), reference, {"source": "transformers Qwen2ForCausalLM"})
    print("tiny-qwen2:", reference["greedy_tokens"].tolist())


FIXTURES = {"tiny-llama": make_tiny_llama, "tiny-llava": make_tiny_llava, "tiny-llava-saved": make_tiny_llava_saved,
            "tiny-qwen2": make_tiny_qwen2}

if __name__ == "__main__":
    for name in sys.argv[1:] or FIXTURES:
        FIXTURES[name]()
