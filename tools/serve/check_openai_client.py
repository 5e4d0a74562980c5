"""The official `openai` Python client against `pdrop serve` (`make serve-check`): a chat with an
image, the same chat streamed, the extension fields through `extra_body`, and errors, each
checked against `pdrop generate` for the same request (greedy)."""
import argparse
import base64
import json
import subprocess
import sys

import openai

from server import Server

parser = argparse.ArgumentParser()
parser.add_argument("--pdrop", default=".build/release/pdrop")
parser.add_argument("--model", default="Tests/Fixtures/tiny-llava")
parser.add_argument("--image", default="Tests/Fixtures/images/chelsea.jpg")
args = parser.parse_args()

question = "What is in the picture?"
with open(args.image, "rb") as file:
    data_url = "data:image/jpeg;base64," + base64.b64encode(file.read()).decode()
messages = [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": question}]}]
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def generate(*reduction):
    """`pdrop generate --json` for the same question: the reference answer."""
    output = subprocess.run(
        [args.pdrop, "generate", "--model", args.model, "--image", args.image, "--prompt", question,
         "--max-new-tokens", "8", "--json", *reduction], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


with Server(args.pdrop, args.model) as server:
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)
    models = client.models.list()
    check([model.id for model in models.data] == ["tiny-llava"], f"models.list: {[model.id for model in models.data]}")

    reference = generate()
    completion = client.chat.completions.create(model="tiny-llava", messages=messages, max_tokens=8, temperature=0)
    answer = completion.choices[0].message.content
    check(answer == reference["text"], f"chat with an image equals pdrop generate: {answer!r} vs {reference['text']!r}")
    check(completion.usage.prompt_tokens == reference["promptTokens"] and completion.usage.completion_tokens == len(reference["tokens"]),
          f"usage {completion.usage.prompt_tokens}+{completion.usage.completion_tokens}")
    timings = completion.model_extra["timings"]
    check(timings["kept_image_tokens_per_drop"] == [288, 144, 72], f"default PyramidDrop kept {timings['kept_image_tokens_per_drop']}")

    stream = client.chat.completions.create(
        model="tiny-llava", messages=messages, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True})
    pieces, reasons, usage = [], [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            reasons.append(chunk.choices[0].finish_reason)
        if chunk.usage:
            usage = chunk.usage
    check("".join(pieces) == answer, f"streamed text equals the answer: {''.join(pieces)!r}")
    check(reasons[-1] in ("stop", "length") and all(reason is None for reason in reasons[:-1]), f"finish reasons {reasons}")
    check(usage is not None and usage.completion_tokens == completion.usage.completion_tokens, f"stream usage {usage}")

    none = generate("--reduction", "none")
    plain = client.chat.completions.create(
        model="tiny-llava", messages=messages, max_tokens=8, temperature=0, extra_body={"reduction": "none"})
    check(plain.choices[0].message.content == none["text"] and plain.model_extra["timings"]["kept_image_tokens_per_drop"] == [],
          "extra_body reduction none equals pdrop generate --reduction none")
    fastv = client.chat.completions.create(
        model="tiny-llava", messages=messages, max_tokens=8, temperature=0, extra_body={"fastv": {"layer": 2, "ratio": 0.75}})
    check(fastv.model_extra["timings"]["kept_image_tokens_per_drop"] == [144], "extra_body fastv keeps 144 of 576")

    try:
        client.chat.completions.create(model="tiny-llava", max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, {"type": "text", "text": "hi"}]}])
        check(False, "a remote image URL is refused")
    except openai.BadRequestError as error:
        check(error.status_code == 400 and "remote image URLs" in error.message, f"a remote image URL is refused: {error.message}")
    try:
        client.chat.completions.create(model="tiny-llava", messages=messages, n=2)
        check(False, "n=2 is refused")
    except openai.BadRequestError as error:
        check("n: only 1" in error.message, f"n=2 is refused: {error.message}")

print(f"{'all checks passed' if not failures else f'{len(failures)} checks failed'}")
sys.exit(1 if failures else 0)
