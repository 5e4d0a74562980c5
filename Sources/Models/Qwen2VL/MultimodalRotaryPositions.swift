/// Qwen2-VL's 3-D rotary positions (M-RoPE), as transformers' `get_rope_index` assigns them: text
/// tokens count up on all three axes alike; an image's tokens (its merged patches, row-major) take
/// the position where the image starts on the temporal axis and that start plus their row / column
/// on the height / width axes; the text after an image resumes at the start plus the image's larger
/// side in merged patches. Decoding continues at `tokens + ropeDelta` on every axis.
public struct MultimodalRotaryPositions: Equatable, Sendable {
    /// (3, tokens): temporal, height and width positions.
    public let positions: Positions
    /// The largest position + 1 minus the token count: what a decoded token's position adds to its index.
    public let ropeDelta: Int

    /// The grid an image's tokens lie on: frames, and patch rows and columns before the merger.
    public struct ImageGrid: Equatable, Sendable {
        public let frames: Int, rows: Int, columns: Int
        public init(frames: Int, rows: Int, columns: Int) {
            self.frames = frames
            self.rows = rows
            self.columns = columns
        }
    }

    /// Why positions could not be assigned: the image tokens do not match the grids.
    public struct MismatchError: Error, Equatable, CustomStringConvertible {
        public let reason: String
        public var description: String { "image tokens do not match the images: \(reason)" }
    }

    /// Positions for a sequence whose tokens `isImageToken` marks; `grids` in the order the images
    /// appear; `mergeSize` the side of the patch square the merger joins into one token.
    public init(isImageToken: [Bool], grids: [ImageGrid], mergeSize: Int) throws(MismatchError) {
        var temporal: [Int] = [], height: [Int] = [], width: [Int] = []
        temporal.reserveCapacity(isImageToken.count)
        height.reserveCapacity(isImageToken.count)
        width.reserveCapacity(isImageToken.count)
        var position = 0, index = 0, imageIndex = 0
        while index < isImageToken.count {
            if !isImageToken[index] {
                temporal.append(position)
                height.append(position)
                width.append(position)
                position += 1
                index += 1
                continue
            }
            guard imageIndex < grids.count else {
                throw MismatchError(reason: "image tokens at \(index) but only \(grids.count) image(s) given")
            }
            let grid = grids[imageIndex]
            let (rows, columns) = (grid.rows / mergeSize, grid.columns / mergeSize)
            let count = grid.frames * rows * columns
            guard index + count <= isImageToken.count, isImageToken[index..<(index + count)].allSatisfy({ $0 }) else {
                throw MismatchError(reason: "image \(imageIndex + 1) needs \(count) consecutive image tokens from token \(index)")
            }
            for frame in 0..<grid.frames {
                for row in 0..<rows {
                    for column in 0..<columns {
                        temporal.append(position + frame)
                        height.append(position + row)
                        width.append(position + column)
                    }
                }
            }
            position += max(rows, columns)
            index += count
            imageIndex += 1
        }
        guard imageIndex == grids.count else {
            throw MismatchError(reason: "\(grids.count) image(s) given but image tokens for \(imageIndex)")
        }
        positions = Positions(axes: [temporal, height, width])
        ropeDelta = position - isImageToken.count
    }
}
