import Foundation

/// PIL's resampling filters, numbered as `PIL.Image.Resampling` (and transformers' `PILImageResampling`),
/// which is how `preprocessor_config.json` stores them. NEAREST (0) is not offered: PIL runs it through a
/// different code path (an affine transform) and no CLIP-style configuration uses it.
public enum ResamplingFilter: Int, Sendable, CaseIterable, Codable {
    case lanczos = 1
    case bilinear = 2
    case bicubic = 3
    case box = 4
    case hamming = 5

    /// Half-width of the filter in source pixels before any downscaling stretch.
    var support: Double {
        switch self {
        case .box: return 0.5
        case .bilinear, .hamming: return 1.0
        case .bicubic: return 2.0
        case .lanczos: return 3.0
        }
    }

    /// The kernels of Pillow's Resample.c, operation for operation, so the coefficients round identically.
    func weight(_ distance: Double) -> Double {
        switch self {
        case .box:
            return distance > -0.5 && distance <= 0.5 ? 1.0 : 0.0
        case .bilinear:
            let x = abs(distance)
            return x < 1.0 ? 1.0 - x : 0.0
        case .hamming:
            var x = abs(distance)
            if x == 0.0 { return 1.0 }
            if x >= 1.0 { return 0.0 }
            x = x * Double.pi
            // Pillow writes the window constants as C floats.
            return sin(x) / x * (Double(Float(0.54)) + Double(Float(0.46)) * cos(x))
        case .bicubic:
            let a = -0.5  // Pillow's choice; Catmull-Rom-like, not Keys' a = -0.75 of OpenCV/torch
            let x = abs(distance)
            if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
            if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0.0
        case .lanczos:
            if -3.0 <= distance && distance < 3.0 {
                return Self.sinc(distance) * Self.sinc(distance / 3)
            }
            return 0.0
        }
    }

    private static func sinc(_ value: Double) -> Double {
        if value == 0.0 { return 1.0 }
        let x = value * Double.pi
        return sin(x) / x
    }
}

/// Fixed-point convolution weights along one axis: for each output position the first source index and the
/// weights of the source pixels from there on.
struct ResamplingKernel {
    /// Pillow keeps 22 fractional bits: 8 bits of sample, 2 bits of headroom for negative lobes and overshoot.
    static let precisionBits = 32 - 8 - 2

    let taps: Int                 // weights stored per output position
    let firstSource: [Int]        // (outputSize)
    let sourceCount: [Int]        // (outputSize)
    let weights: [Int32]          // (outputSize, taps)

    /// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc` for the whole input range.
    init(inputSize: Int, outputSize: Int, filter: ResamplingFilter) {
        // Pillow receives the box as C floats and subtracts them as floats.
        let boxStart: Float = 0
        let boxEnd = Float(inputSize)
        let scale = Double(boxEnd - boxStart) / Double(outputSize)
        // Downscaling stretches the filter over `scale` source pixels: this is PIL's antialiasing.
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
        let taps = Int(ceil(support)) * 2 + 1
        let inverseFilterScale = 1.0 / filterScale

        var firstSource = [Int](repeating: 0, count: outputSize)  // (outputSize)
        var sourceCount = [Int](repeating: 0, count: outputSize)  // (outputSize)
        var weights = [Int32](repeating: 0, count: outputSize * taps)  // (outputSize, taps)
        var realWeights = [Double](repeating: 0, count: taps)  // (taps)
        let one = Double(1 << Self.precisionBits)
        for output in 0..<outputSize {
            let center = Double(boxStart) + (Double(output) + 0.5) * scale
            // C's (int) truncation toward zero, then clamped to the image.
            let first = max(Int(center - support + 0.5), 0)
            let last = min(Int(center + support + 0.5), inputSize)
            let count = last - first
            var total = 0.0
            for tap in 0..<max(count, 0) {
                let weight = filter.weight((Double(tap + first) - center + 0.5) * inverseFilterScale)
                realWeights[tap] = weight
                total += weight
            }
            for tap in 0..<max(count, 0) {
                let normalized = total != 0.0 ? realWeights[tap] / total : realWeights[tap]
                weights[output * taps + tap] = Int32(normalized < 0 ? -0.5 + normalized * one : 0.5 + normalized * one)
            }
            firstSource[output] = first
            sourceCount[output] = max(count, 0)
        }
        self.taps = taps
        self.firstSource = firstSource
        self.sourceCount = sourceCount
        self.weights = weights
    }
}

extension RGBImage {
    /// `PIL.Image.resize((width, height), filter)` for an RGB image, bit for bit: one pass per axis whose size
    /// changes, each with Pillow's fixed-point weights, rounding and clipping to 8 bits in between. Same size
    /// is a copy.
    public func resized(width newWidth: Int, height newHeight: Int, filter: ResamplingFilter) -> RGBImage {
        precondition(newWidth > 0 && newHeight > 0, "resize target must be at least 1×1")
        precondition(width > 0 && height > 0, "cannot resize an empty image")
        let vertical = ResamplingKernel(inputSize: height, outputSize: newHeight, filter: filter)
        let changesWidth = newWidth != width
        let changesHeight = newHeight != height
        let horizontal = changesWidth ? ResamplingKernel(inputSize: width, outputSize: newWidth, filter: filter) : nil

        // Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as
        // the width does (it is less work); the 8-bit rounding between passes makes the order visible, so it
        // is copied. Older Pillow releases always went horizontal first.
        let heightReduction = height - newHeight
        if let horizontal, changesHeight, heightReduction > 0, heightReduction > 2 * (width - newWidth) {
            let shortened = verticalPass(kernel: vertical, firstSource: vertical.firstSource, newHeight: newHeight)
            return shortened.horizontalPass(rows: 0..<newHeight, kernel: horizontal, newWidth: newWidth)
        }

        var image = self
        var verticalFirstSource = vertical.firstSource
        if let horizontal {
            // Only rows the vertical pass will read are filtered, as in Pillow; their values are the same.
            let firstRow = vertical.firstSource[0]
            let lastRow = vertical.firstSource[newHeight - 1] + vertical.sourceCount[newHeight - 1]
            image = horizontalPass(rows: firstRow..<lastRow, kernel: horizontal, newWidth: newWidth)
            verticalFirstSource = vertical.firstSource.map { $0 - firstRow }
        }
        if changesHeight {
            image = image.verticalPass(kernel: vertical, firstSource: verticalFirstSource, newHeight: newHeight)
        }
        return image
    }

    private func horizontalPass(rows: Range<Int>, kernel: ResamplingKernel, newWidth: Int) -> RGBImage {
        let outputHeight = rows.count
        var output = [UInt8](repeating: 0, count: outputHeight * newWidth * 3)  // (rows.count, newWidth, 3)
        let rounding = Int32(1) << (ResamplingKernel.precisionBits - 1)
        pixels.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { result in
                kernel.weights.withUnsafeBufferPointer { weights in
                    for outputRow in 0..<outputHeight {
                        let inputRowStart = (rows.lowerBound + outputRow) * width * 3
                        for x in 0..<newWidth {
                            let first = kernel.firstSource[x]
                            let weightStart = x * kernel.taps
                            var red = rounding, green = rounding, blue = rounding
                            for tap in 0..<kernel.sourceCount[x] {
                                let weight = weights[weightStart + tap]
                                let from = inputRowStart + (first + tap) * 3
                                red &+= Int32(input[from]) &* weight
                                green &+= Int32(input[from + 1]) &* weight
                                blue &+= Int32(input[from + 2]) &* weight
                            }
                            let to = (outputRow * newWidth + x) * 3
                            result[to] = clipFixedPoint(red)
                            result[to + 1] = clipFixedPoint(green)
                            result[to + 2] = clipFixedPoint(blue)
                        }
                    }
                }
            }
        }
        return RGBImage(width: newWidth, height: outputHeight, pixels: output)
    }

    private func verticalPass(kernel: ResamplingKernel, firstSource: [Int], newHeight: Int) -> RGBImage {
        let rowValues = width * 3
        var output = [UInt8](repeating: 0, count: newHeight * rowValues)  // (newHeight, width, 3)
        let rounding = Int32(1) << (ResamplingKernel.precisionBits - 1)
        pixels.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { result in
                kernel.weights.withUnsafeBufferPointer { weights in
                    var accumulators = [Int32](repeating: 0, count: rowValues)  // (width × 3)
                    for y in 0..<newHeight {
                        for index in 0..<rowValues { accumulators[index] = rounding }
                        let first = firstSource[y]
                        for tap in 0..<kernel.sourceCount[y] {
                            let weight = weights[y * kernel.taps + tap]
                            let rowStart = (first + tap) * rowValues
                            for index in 0..<rowValues {
                                accumulators[index] &+= Int32(input[rowStart + index]) &* weight
                            }
                        }
                        let outputStart = y * rowValues
                        for index in 0..<rowValues {
                            result[outputStart + index] = clipFixedPoint(accumulators[index])
                        }
                    }
                }
            }
        }
        return RGBImage(width: width, height: newHeight, pixels: output)
    }
}

/// Pillow's `clip8`: drops the fractional bits (arithmetic shift, so negatives floor) and saturates to 0...255.
@inline(__always)
private func clipFixedPoint(_ accumulator: Int32) -> UInt8 {
    UInt8(clamping: accumulator >> Int32(ResamplingKernel.precisionBits))
}
