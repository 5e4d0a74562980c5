"""`make serve-bench`: `pdrop serve` under load, and docs/SERVING.md from what it measures.

1. Correctness under load (the tiny fixture, --parallel 8): every distinct request is answered
   once, serially; then hundreds of the same requests come from concurrent clients (streaming
   and not), and each answer must equal its serial one (none lost, none mixed up). The server's
   resident memory is read when idle before and after.
2. Throughput (a random 0.26 B-parameter LLaVA, bf16, made by `pdrop init` from
   tools/serve/bench-config.json): 1, 2, 4 and 8 concurrent streaming clients, a fixed number
   of requests each, with PyramidDrop and without; total generated tokens per second, time to
   first token and request latency, and the ratio of each to one stream, all in one run."""
import argparse
import base64
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from server import Server

parser = argparse.ArgumentParser()
parser.add_argument("--pdrop", default=".build/release/pdrop")
parser.add_argument("--model", default="Tests/Fixtures/tiny-llava")
parser.add_argument("--image", default="Tests/Fixtures/images/chelsea.jpg")
parser.add_argument("--requests", type=int, default=320)
parser.add_argument("--clients", type=int, default=16)
parser.add_argument("--bench-model", default=".build/serve-bench-model")
parser.add_argument("--streams", default="1,2,4,8")
parser.add_argument("--requests-per-stream", type=int, default=2)
parser.add_argument("--max-tokens", type=int, default=48)
parser.add_argument("--decode-tokens", type=int, default=96)
parser.add_argument("--output", default="docs/SERVING.md")
args = parser.parse_args()

with open(args.image, "rb") as file:
    data_url = "data:image/jpeg;base64," + base64.b64encode(file.read()).decode()


def body(question, image=True, max_tokens=8, extra=None, stream=False):
    content = [{"type": "text", "text": question}]
    if image:
        content.insert(0, {"type": "image_url", "image_url": {"url": data_url}})
    request = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    request.update(extra or {})
    return request


def post(base, request):
    """The answer text, completion tokens, time to first token and latency of one request."""
    start = time.perf_counter()
    http = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(request).encode(),
                                  headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(http, timeout=600) as response:
        if not request.get("stream"):
            object = json.loads(response.read())
            end = time.perf_counter()
            return object["choices"][0]["message"]["content"], object["usage"]["completion_tokens"], None, end - start
        text, first, tokens = "", None, 0
        for line in response:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                piece = choice["delta"].get("content")
                if piece and first is None:
                    first = time.perf_counter() - start
                text += piece or ""
                if choice.get("finish_reason"):
                    tokens = chunk["timings"]["predicted_n"]
        return text, tokens, first, time.perf_counter() - start


def concurrently(client, count):
    """Runs client(0..count-1) on threads at once: every result they return, and the wall time."""
    results, lock = [], threading.Lock()

    def run(index):
        answers = client(index)
        with lock:
            results.extend(answers)

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - start


# 1. Correctness under load.
questions = ["What is in the picture?", "Describe the colours.", "Where is the cat?", "Is it day or night?",
             "What is the animal doing?", "Tell me a story about this image in detail."]
reductions = [{}, {"reduction": "none"}, {"fastv": {"layer": 2, "ratio": 0.75}}, {"pyramid_drop": {"budget_tokens": 128}}]
variants = [body(question, image=index % 5 != 4, max_tokens=4 + (index * 3) % 13, extra=reduction)
            for index, (question, reduction) in enumerate((q, r) for q in questions for r in reductions)]
print(f"load test: {len(variants)} distinct requests, {args.requests} from {args.clients} clients", flush=True)
with Server(args.pdrop, args.model, "--parallel", "8", "--max-queue", str(args.requests)) as server:
    serial = [post(server.base, variant)[0] for variant in variants]
    idle_before = server.resident_bytes()
    jobs = [(index % len(variants), index % 2 == 1) for index in range(args.requests)]

    def run(job):
        variant, stream = job
        return post(server.base, dict(variants[variant], stream=stream))[0]

    # Two rounds of the same load: memory after each, to tell a leak (growth every round) from
    # the allocator's high-water mark.
    idle_after, answers, load_seconds = [], [], 0.0
    for _ in range(2):
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            answers += list(pool.map(run, jobs))
        load_seconds += time.perf_counter() - start
        time.sleep(3)  # the server returns freed memory after a second idle
        idle_after.append(server.resident_bytes())
    jobs = jobs * 2
    mismatches = sum(answer != serial[variant] for answer, (variant, _) in zip(answers, jobs))
    metrics = server.metrics()
print(f"  {len(answers)} answers, {mismatches} differ from their serial run, {load_seconds:.1f} s; resident memory idle "
      f"{idle_before / 2**20:.1f} MiB before, {idle_after[0] / 2**20:.1f} / {idle_after[1] / 2**20:.1f} MiB after each round", flush=True)

# 2. Throughput with 1, 2, 4, 8 streams.
if not os.path.exists(os.path.join(args.bench_model, "model.safetensors")):
    subprocess.run([args.pdrop, "init", "--config", "tools/serve/bench-config.json", "--tokenizer", "Tests/Fixtures/tiny-llava",
                    "--output", args.bench_model, "--dtype", "bfloat16", "--seed", "1"], check=True)
streams = [int(value) for value in args.streams.split(",")]
rows = []
with Server(args.pdrop, args.bench_model, "--parallel", str(max(streams))) as server:
    post(server.base, body("warm up", max_tokens=2))
    for name, extra in (("none", {"reduction": "none"}), ("PyramidDrop", {})):
        for count in streams:
            def client(index):
                return [post(server.base, body(f"{questions[(index + request) % len(questions)]} ({index}.{request})",
                                              max_tokens=args.max_tokens, extra=extra, stream=True))
                        for request in range(args.requests_per_stream)]

            results, wall = concurrently(client, count)
            tokens = sum(result[1] for result in results)
            firsts = sorted(result[2] for result in results if result[2] is not None)
            latencies = sorted(result[3] for result in results)
            rows.append({"reduction": name, "streams": count, "requests": len(results), "tokens": tokens, "seconds": wall,
                         "tokens_per_second": tokens / wall, "ttft_p50": statistics.median(firsts), "ttft_p99": firsts[-1] if len(firsts) < 100 else firsts[int(len(firsts) * 0.99)],
                         "latency_p50": statistics.median(latencies), "latency_max": latencies[-1]})
            print(f"  {name:11s} {count} streams: {tokens / wall:6.1f} tokens/s, TTFT p50 {statistics.median(firsts):.2f} s", flush=True)
    # Decoding alone: short text prompts (prefill a few milliseconds) and long answers, every
    # stream decoding at once, so the ratio is what sharing each read of the weights buys.
    decode_rows = []
    for count in streams:
        def decode_client(index):
            return [post(server.base, body(f"Count to a hundred ({index}).", image=False, max_tokens=args.decode_tokens, stream=True))]

        results, wall = concurrently(decode_client, count)
        tokens = sum(result[1] for result in results)
        decode_rows.append({"streams": count, "tokens": tokens, "seconds": wall, "tokens_per_second": tokens / wall})
        print(f"  decode only {count} streams: {tokens / wall:6.1f} tokens/s", flush=True)

with open(args.output, "w") as out:
    out.write("# Serving: `pdrop serve` under load\n\n")
    out.write("Generated by `make serve-bench` (tools/serve/load_test.py) on this machine; every figure below comes from one run of it.\n\n")
    out.write("## Correctness under load\n\n")
    out.write(f"The tiny LLaVA fixture (`{args.model}`), `--parallel 8`. {len(variants)} distinct requests (6 questions × 4 reductions: "
              "the default PyramidDrop, none, FastV, a PyramidDrop budget; with and without the image; 4 to 16 tokens, greedy) "
              f"were answered once each, serially; then 2 × {args.requests} of them (each distinct request {args.requests // len(variants)} times a round, "
              f"half streamed) came from {args.clients} concurrent clients, in each of two rounds; the server's resident memory "
              "was read idle before and 3 s after each round.\n\n")
    out.write("| answers | differing from their serial run | lost | wall time | resident memory idle before | after round 1 | after round 2 |\n"
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    out.write(f"| {len(answers)} | {mismatches} | {len(jobs) - len(answers)} | {load_seconds:.1f} s | {idle_before / 2**20:.1f} MiB | "
              f"{idle_after[0] / 2**20:.1f} MiB | {idle_after[1] / 2**20:.1f} MiB |\n\n")
    out.write(f"Server counters after the run: {int(metrics.get('pdrop_requests_total', 0))} requests, "
              f"{int(metrics.get('pdrop_generated_tokens_total', 0))} generated tokens, "
              f"{int(metrics.get('pdrop_image_tokens_dropped_total', 0))} of {int(metrics.get('pdrop_image_tokens_total', 0))} image tokens dropped.\n\n")
    out.write("## Batched decoding: throughput against the number of streams\n\n")
    out.write(f"A random LLaVA of 0.26 B parameters in bf16 (`tools/serve/bench-config.json`: LLaMA decoder of 16 layers, hidden 1024, "
              f"16 heads / 8 KV heads; CLIP tower of 4 layers at 336 px, 576 image tokens), `--parallel {max(streams)}`. Each stream is a client "
              f"sending {args.requests_per_stream} streaming requests one after the other (a question about the photo, "
              f"{args.max_tokens} tokens, greedy; random weights rarely end early). Tokens per second are all generated tokens over the wall "
              "time of the run (prefills, which run one at a time between decode steps, included); the ratio is to one stream "
              "with the same reduction.\n\n")
    out.write("| reduction | streams | requests | generated tokens | tokens/s | × one stream | time to first token p50 | max | request latency p50 | max |\n")
    out.write("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    for row in rows:
        base = next(r for r in rows if r["reduction"] == row["reduction"] and r["streams"] == streams[0])
        out.write(f"| {row['reduction']} | {row['streams']} | {row['requests']} | {row['tokens']} | {row['tokens_per_second']:.1f} | "
                  f"{row['tokens_per_second'] / base['tokens_per_second']:.2f} | {row['ttft_p50']:.2f} s | {row['ttft_p99']:.2f} s | "
                  f"{row['latency_p50']:.2f} s | {row['latency_max']:.2f} s |\n")
    out.write("\nThe time to first token grows with the streams because prefills queue behind each other (one at a time); "
              "PyramidDrop shortens each prefill, so its first tokens come sooner. With an image of 576 tokens and 48-token "
              "answers, the prefills take much of the wall time, which is why the ratios stay low.\n\n")
    out.write("### Decoding alone\n\n")
    out.write(f"The same server; each stream sends one short text-only prompt and generates {args.decode_tokens} tokens, all streams "
              "at once, so the prefills are negligible and the batch is full for nearly the whole run: what batched decoding "
              "gains when every step's read of the weights is shared.\n\n")
    out.write("| streams | generated tokens | wall time | tokens/s | × one stream |\n| ---: | ---: | ---: | ---: | ---: |\n")
    for row in decode_rows:
        out.write(f"| {row['streams']} | {row['tokens']} | {row['seconds']:.2f} s | {row['tokens_per_second']:.1f} | "
                  f"{row['tokens_per_second'] / decode_rows[0]['tokens_per_second']:.2f} |\n")
print(f"wrote {args.output}")
sys.exit(1 if mismatches else 0)
