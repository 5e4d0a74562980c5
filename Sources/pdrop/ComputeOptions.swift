import ArgumentParser
import Foundation
import TensorCore

/// `--compute`: the precision of products with bf16 or Q8_0 weights (`ProductPrecision`).
struct ComputeOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Products with bf16 or Q8_0 weights: fp32 (exact, the default) or bf16 (inputs rounded to bf16, fp32 sums; about twice as fast on CPUs with AVX512-BF16, fp32 elsewhere; Q8_0 decode quantizes its inputs to Q8_0 as llama.cpp on any AVX2 CPU).",
        valueName: "fp32|bf16"))
    var compute: String = ProductPrecision.float32.rawValue

    func validate() throws {
        if ProductPrecision(rawValue: compute) == nil {
            throw ValidationError("--compute '\(compute)' is unknown; choose fp32 or bf16")
        }
    }

    /// Sets the process's product precision; says so on stderr when bf16 is asked for on a CPU without it.
    func apply() {
        let precision = ProductPrecision(rawValue: compute) ?? .float32
        if precision == .bfloat16 && !BFloat16Products.isAvailable {
            FileHandle.standardError.write(Data("note: this CPU lacks AVX512-BF16; products with many input rows compute in fp32 (Q8_0 decode still quantizes its inputs)\n".utf8))
        }
        WeightMatrix.productPrecision = precision
    }
}
