import FileAccess
import Foundation

/// How `size` in a preprocessor config asks the image to be resized (the `size` dict forms transformers'
/// PIL backend accepts for CLIP-style processors).
public enum ResizeTarget: Equatable, Sendable {
    /// `{"shortest_edge": n}`: the short side becomes n, the long side keeps the aspect ratio (truncated).
    /// With `longest_edge`, the long side is also capped, as transformers' `get_size_with_aspect_ratio` does.
    case shortestEdge(Int, longestEdge: Int?)
    /// `{"height": h, "width": w}`: exactly that size, aspect ratio ignored.
    case exactly(height: Int, width: Int)
}

/// Why a preprocessor configuration was refused.
public struct ImageProcessorConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    public let file: String
    public let reason: String

    public init(file: String, reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "\(file): invalid image processor configuration: \(reason)" }
}

/// The fields of a `CLIPImageProcessor` configuration, as stored in `preprocessor_config.json`. Keys that are
/// absent or null take the defaults of transformers' `CLIPImageProcessor` class; unrelated keys (processor
/// class, feature extractor type, ...) are ignored.
public struct CLIPImageProcessorConfig: Equatable, Sendable {
    public static let openAICLIPMean = [0.48145466, 0.4578275, 0.40821073]
    public static let openAICLIPStandardDeviation = [0.26862954, 0.26130258, 0.27577711]

    public var doResize = true
    public var size = ResizeTarget.shortestEdge(224, longestEdge: nil)
    public var resample = ResamplingFilter.bicubic
    public var doCenterCrop = true
    public var cropHeight = 224
    public var cropWidth = 224
    public var doRescale = true
    public var rescaleFactor = 1.0 / 255.0
    public var doNormalize = true
    public var imageMean = openAICLIPMean           // (3)
    public var imageStd = openAICLIPStandardDeviation  // (3)
    /// Read for completeness; how transparency is flattened is chosen when decoding (`AlphaHandling`), and
    /// decoded images are always RGB.
    public var doConvertRGB = true

    public init() {}

    /// Reads `preprocessor_config.json`, or a `processor_config.json` that nests the same object under
    /// `"image_processor"` (what transformers 5's `save_pretrained` writes).
    public static func load(contentsOf url: URL) throws(ImageProcessorConfigError) -> CLIPImageProcessorConfig {
        switch readWholeFile(atPath: url.path) {
        case .success(let bytes):
            return try parse(Data(bytes), file: url.path)
        case .failure(let error):
            throw ImageProcessorConfigError(file: url.path, reason: "cannot read the file: \(error.reason)")
        }
    }

    /// Parses either layout from JSON bytes; `file` only names the source in errors.
    public static func parse(_ json: Data, file: String = "<memory>") throws(ImageProcessorConfigError) -> CLIPImageProcessorConfig {
        do {
            return try JSONDecoder().decode(ConfigFileLayout<CLIPImageProcessorConfig>.self, from: json).config
        } catch {
            throw ImageProcessorConfigError(file: file, reason: describeDecodingError(error))
        }
    }
}

/// Both file layouts: the flat preprocessor config, and the processor config with an "image_processor" object.
struct ConfigFileLayout<Config: Decodable>: Decodable {
    let config: Config

    enum CodingKeys: String, CodingKey {
        case imageProcessor = "image_processor"
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        config = try container.decodeIfPresent(Config.self, forKey: .imageProcessor) ?? Config(from: decoder)
    }
}

extension CLIPImageProcessorConfig: Codable {
    enum CodingKeys: String, CodingKey {
        case doResize = "do_resize"
        case size
        case resample
        case doCenterCrop = "do_center_crop"
        case cropSize = "crop_size"
        case doRescale = "do_rescale"
        case rescaleFactor = "rescale_factor"
        case doNormalize = "do_normalize"
        case imageMean = "image_mean"
        case imageStd = "image_std"
        case doConvertRGB = "do_convert_rgb"
        case defaultToSquare = "default_to_square"
    }

    /// The keys of a `size`/`crop_size` dictionary, for encoding.
    private enum SizeKeys: String, CodingKey {
        case height, width
        case shortestEdge = "shortest_edge"
        case longestEdge = "longest_edge"
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        doResize = try container.decodeIfPresent(Bool.self, forKey: .doResize) ?? doResize
        doCenterCrop = try container.decodeIfPresent(Bool.self, forKey: .doCenterCrop) ?? doCenterCrop
        doRescale = try container.decodeIfPresent(Bool.self, forKey: .doRescale) ?? doRescale
        rescaleFactor = try container.decodeIfPresent(Double.self, forKey: .rescaleFactor) ?? rescaleFactor
        doNormalize = try container.decodeIfPresent(Bool.self, forKey: .doNormalize) ?? doNormalize
        doConvertRGB = try container.decodeIfPresent(Bool.self, forKey: .doConvertRGB) ?? doConvertRGB

        if let code = try container.decodeIfPresent(Int.self, forKey: .resample) {
            guard let filter = ResamplingFilter(rawValue: code) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .resample, in: container,
                    debugDescription: "resample \(code) is not supported (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)")
            }
            resample = filter
        }

        // CLIP sets default_to_square = False, so a bare integer size means the shortest edge.
        let defaultToSquare = try container.decodeIfPresent(Bool.self, forKey: .defaultToSquare) ?? false
        if container.contains(.size), try !container.decodeNil(forKey: .size) {
            size = try Self.decodeResizeTarget(container, defaultToSquare: defaultToSquare)
        }
        if container.contains(.cropSize), try !container.decodeNil(forKey: .cropSize) {
            (cropHeight, cropWidth) = try Self.decodeCropSize(container)
        }
        imageMean = try Self.decodeChannelValues(container, key: .imageMean) ?? imageMean
        imageStd = try Self.decodeChannelValues(container, key: .imageStd) ?? imageStd
        guard !imageStd.contains(0) else {
            throw DecodingError.dataCorruptedError(forKey: .imageStd, in: container, debugDescription: "image_std must not contain 0")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(doResize, forKey: .doResize)
        var sizeContainer = container.nestedContainer(keyedBy: SizeKeys.self, forKey: .size)
        switch size {
        case .shortestEdge(let shortest, let longest):
            try sizeContainer.encode(shortest, forKey: .shortestEdge)
            try sizeContainer.encodeIfPresent(longest, forKey: .longestEdge)
        case .exactly(let height, let width):
            try sizeContainer.encode(height, forKey: .height)
            try sizeContainer.encode(width, forKey: .width)
        }
        try container.encode(resample.rawValue, forKey: .resample)
        try container.encode(doCenterCrop, forKey: .doCenterCrop)
        var cropContainer = container.nestedContainer(keyedBy: SizeKeys.self, forKey: .cropSize)
        try cropContainer.encode(cropHeight, forKey: .height)
        try cropContainer.encode(cropWidth, forKey: .width)
        try container.encode(doRescale, forKey: .doRescale)
        try container.encode(rescaleFactor, forKey: .rescaleFactor)
        try container.encode(doNormalize, forKey: .doNormalize)
        try container.encode(imageMean, forKey: .imageMean)
        try container.encode(imageStd, forKey: .imageStd)
        try container.encode(doConvertRGB, forKey: .doConvertRGB)
    }

    /// transformers' `get_size_dict` for `size`: an int, a [height, width] list, or one of the dict forms.
    private static func decodeResizeTarget(
        _ container: KeyedDecodingContainer<CodingKeys>, defaultToSquare: Bool
    ) throws -> ResizeTarget {
        if let edge = try? container.decode(Int.self, forKey: .size) {
            try requirePositive([edge], key: .size, in: container)
            return defaultToSquare ? .exactly(height: edge, width: edge) : .shortestEdge(edge, longestEdge: nil)
        }
        if let pair = try? container.decode([Int].self, forKey: .size) {
            guard pair.count == 2 else {
                throw DecodingError.dataCorruptedError(forKey: .size, in: container, debugDescription: "size list must be [height, width]")
            }
            try requirePositive(pair, key: .size, in: container)
            return .exactly(height: pair[0], width: pair[1])
        }
        let sizes = try container.decode([String: Int].self, forKey: .size)
        try requirePositive(Array(sizes.values), key: .size, in: container)
        switch (sizes["height"], sizes["width"], sizes["shortest_edge"], sizes["longest_edge"], sizes.count) {
        case (let height?, let width?, nil, nil, 2):
            return .exactly(height: height, width: width)
        case (nil, nil, let shortest?, nil, 1):
            return .shortestEdge(shortest, longestEdge: nil)
        case (nil, nil, let shortest?, let longest?, 2):
            return .shortestEdge(shortest, longestEdge: longest)
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .size, in: container,
                debugDescription: "size keys \(sizes.keys.sorted()) are not supported "
                    + "(height+width, shortest_edge, or shortest_edge+longest_edge)")
        }
    }

    /// transformers' `get_size_dict(crop_size)`: an int is a square; otherwise height and width.
    private static func decodeCropSize(_ container: KeyedDecodingContainer<CodingKeys>) throws -> (Int, Int) {
        if let side = try? container.decode(Int.self, forKey: .cropSize) {
            try requirePositive([side], key: .cropSize, in: container)
            return (side, side)
        }
        if let pair = try? container.decode([Int].self, forKey: .cropSize), pair.count == 2 {
            try requirePositive(pair, key: .cropSize, in: container)
            return (pair[0], pair[1])
        }
        let sizes = try container.decode([String: Int].self, forKey: .cropSize)
        guard let height = sizes["height"], let width = sizes["width"], sizes.count == 2 else {
            throw DecodingError.dataCorruptedError(
                forKey: .cropSize, in: container, debugDescription: "crop_size needs exactly height and width, got \(sizes.keys.sorted())")
        }
        try requirePositive([height, width], key: .cropSize, in: container)
        return (height, width)
    }

    /// A list of three per-channel values, or one value for all channels (numpy broadcasting).
    private static func decodeChannelValues(_ container: KeyedDecodingContainer<CodingKeys>, key: CodingKeys) throws -> [Double]? {
        guard container.contains(key), try !container.decodeNil(forKey: key) else { return nil }
        if let single = try? container.decode(Double.self, forKey: key) {
            return [single, single, single]
        }
        let values = try container.decode([Double].self, forKey: key)
        guard values.count == 3 else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: container, debugDescription: "\(key.stringValue) needs 3 values (one per RGB channel), got \(values.count)")
        }
        return values
    }

    /// transformers sets no upper bound, but a side beyond 65536 could only make an absurd allocation (and
    /// overflow the size arithmetic), so such a configuration is refused here rather than later.
    private static let largestSide = 65_536

    private static func requirePositive(_ values: [Int], key: CodingKeys, in container: KeyedDecodingContainer<CodingKeys>) throws {
        guard values.allSatisfy({ $0 > 0 }) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "\(key.stringValue) must be positive, got \(values)")
        }
        guard values.allSatisfy({ $0 <= largestSide }) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: container, debugDescription: "\(key.stringValue) must be at most \(largestSide), got \(values)")
        }
    }
}
