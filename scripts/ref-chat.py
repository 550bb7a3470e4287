#!/usr/bin/env python3
"""Reference chat prompts from llama.cpp, for tests/tokenizer.rs.

Calls llama.cpp's C API `llama_chat_apply_template(tmpl, chat, n_msg, add_ass, buf, len)` through ctypes, from the
prebuilt libllama that the pinned node-llama-cpp 3.21.1 ships (scripts/node_modules/@node-llama-cpp/linux-x64).
llama.cpp does not run the Jinja template there: it detects the template family from the template text and
applies its built-in formatter for that family. Run `scripts/setup` first, then, with the venv's Python (it has
the pinned gguf==0.19.0 package, used to read the template out of the GGUF):

    .cache/venv/bin/python scripts/ref-chat.py

Writes tests/fixtures/chat-smollm2.json (the template in SmolLM2-135M-Instruct.Q4_1.gguf, detected as ChatML),
tests/fixtures/chat-llama31.json (models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja, detected as
llama3), and one fixture per template of FAMILY_TEMPLATES. The output is deterministic.
"""

import ctypes
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, ".cache", "models")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
NLC = os.path.join(ROOT, "scripts", "node_modules", "node-llama-cpp")

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": " The capital of France is Paris. \n"},
    {"role": "user", "content": "And of Japan? 日本の首都は？ 🗾\nPlease be brief."},
]


# (fixture name, template file): llama.cpp detects ChatML in both Qwen templates, its gemma format in Gemma 3's and
# phi3 in Phi-3.5's.
FAMILY_TEMPLATES = [
    ("qwen25", "Qwen-Qwen2.5-7B-Instruct.jinja"),
    ("qwen3", "Qwen-Qwen3-0.6B.jinja"),
    ("gemma3", "google-gemma-3-it.jinja"),
    ("phi35", "microsoft-Phi-3.5-mini-instruct.jinja"),
]


def fail(msg):
    sys.exit(f"ref-chat.py: {msg}; run scripts/setup")


def load_llama():
    with open(os.path.join(NLC, "package.json")) as f:
        version = json.load(f)["version"]
    if version != "3.21.1":
        fail(f"expected the pinned node-llama-cpp 3.21.1, found {version}")
    with open(os.path.join(NLC, "llama", "binariesGithubRelease.json")) as f:
        release = json.load(f)["release"]
    bins = glob.glob(os.path.join(ROOT, "scripts", "node_modules", "@node-llama-cpp", "linux-x64", "bins", "*"))
    if len(bins) != 1:
        fail(f"expected one prebuilt llama.cpp folder, found {bins}")
    d = bins[0]

    def one(pattern):
        found = sorted(glob.glob(os.path.join(d, pattern)))
        if not found:
            fail(f"no {pattern} in {d}")
        return found[0]

    # ggml first, globally, so libllama's undefined symbols resolve.
    ctypes.CDLL(one("libggml-base*.so"), mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(one("libggml.*so"), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(one("libllama.*so"))
    return lib, f"llama.cpp {release} via node-llama-cpp {version} (libllama llama_chat_apply_template)"


class ChatMessage(ctypes.Structure):
    _fields_ = [("role", ctypes.c_char_p), ("content", ctypes.c_char_p)]


def apply_template(lib, tmpl, messages, add_ass):
    fn = lib.llama_chat_apply_template
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ChatMessage), ctypes.c_size_t, ctypes.c_bool,
                   ctypes.c_char_p, ctypes.c_int32]
    arr = (ChatMessage * len(messages))(
        *[ChatMessage(m["role"].encode(), m["content"].encode()) for m in messages])
    t = tmpl.encode()
    n = fn(t, arr, len(messages), add_ass, None, 0)
    if n < 0:
        raise RuntimeError(f"llama_chat_apply_template returned {n} (template not recognized)")
    buf = ctypes.create_string_buffer(n + 1)
    n2 = fn(t, arr, len(messages), add_ass, buf, n + 1)
    assert n2 == n, (n, n2)
    return buf.raw[:n].decode("utf-8")


def gguf_chat_template(path):
    try:
        import gguf  # the pinned gguf==0.19.0 in .cache/venv
    except ImportError:
        fail("the gguf package is missing (use .cache/venv/bin/python)")
    r = gguf.GGUFReader(path)
    field = r.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def write(name, source, template, lib, reference):
    cases = []
    for add_ass in (True, False):
        cases.append({
            "add_generation_prompt": add_ass,
            "prompt": apply_template(lib, template, MESSAGES, add_ass),
        })
    out = {
        "generator": "scripts/ref-chat.py",
        "reference": reference,
        "template_source": source,
        "messages": MESSAGES,
        "cases": cases,
    }
    dest = os.path.join(FIXTURES, f"chat-{name}.json")
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"wrote {os.path.relpath(dest, ROOT)}")


def main():
    lib, reference = load_llama()
    smol = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
    llama31 = os.path.join(MODELS, "meta-llama-Llama-3.1-8B-Instruct.jinja")
    for p in (smol, llama31):
        if not os.path.exists(p):
            fail(f"{p} is missing")
    write("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf: tokenizer.chat_template", gguf_chat_template(smol), lib,
          reference)
    with open(llama31, encoding="utf-8") as f:
        write("llama31", "meta-llama-Llama-3.1-8B-Instruct.jinja", f.read(), lib, reference)
    # The other families' templates (scripts/setup puts them in .cache/models).
    for name, file in FAMILY_TEMPLATES:
        path = os.path.join(MODELS, file)
        if not os.path.exists(path):
            fail(f"{path} is missing")
        with open(path, encoding="utf-8") as f:
            write(name, file, f.read(), lib, reference)


if __name__ == "__main__":
    main()
