import TensorCore
import Vision

/// Sort-of-CLEVR scenes (Santoro et al. 2017, "A simple neural network module for relational
/// reasoning"): six objects of six colours on a white canvas, each a circle, square or triangle
/// (or fewer objects, of as many random colours, for a curriculum: `pdrop data scenes --objects`).

public enum SceneShape: String, CaseIterable, Sendable {
    case circle, square, triangle
}

/// A named object colour. The six are far apart in RGB and none is near the white background,
/// so a pixel's colour says which object drew it.
public struct SceneColour: Equatable, Sendable {
    public let name: String
    public let red: UInt8, green: UInt8, blue: UInt8

    public static let palette = [
        SceneColour(name: "red", red: 220, green: 30, blue: 30),
        SceneColour(name: "green", red: 30, green: 160, blue: 50),
        SceneColour(name: "blue", red: 30, green: 70, blue: 220),
        SceneColour(name: "orange", red: 250, green: 140, blue: 20),
        SceneColour(name: "grey", red: 120, green: 120, blue: 120),
        SceneColour(name: "yellow", red: 230, green: 210, blue: 0),
    ]

    public func matches(_ pixel: RGBColor) -> Bool { pixel.red == red && pixel.green == green && pixel.blue == blue }
}

public let sceneBackground: RGBColor = (255, 255, 255)

public struct SceneObject: Equatable, Sendable {
    public let colour: SceneColour
    public let shape: SceneShape
    /// The bounding box: columns `left..<left + size`, rows `top..<top + size`.
    public let left: Int, top: Int, size: Int
    /// The pixels drawn, as `y * canvasSide + x`, in increasing order.
    public let pixels: [Int]
    /// The mean position of the drawn pixels' centres: what left/right, top/bottom and distances
    /// are measured from (a triangle's sits below its box's middle).
    public let centreX: Double, centreY: Double

    init(colour: SceneColour, shape: SceneShape, left: Int, top: Int, size: Int) {
        self.colour = colour
        self.shape = shape
        self.left = left
        self.top = top
        self.size = size
        let half = Double(size) / 2
        let middleX = Double(left) + half, middleY = Double(top) + half
        var pixels: [Int] = []
        for y in top..<(top + size) {
            for x in left..<(left + size) {
                // Pixel centres are at +0.5; a pixel belongs to the shape when its centre does.
                let dx = Double(x) + 0.5 - middleX, dy = Double(y) + 0.5 - middleY
                let inside: Bool
                switch shape {
                case .square: inside = true
                case .circle: inside = dx * dx + dy * dy <= half * half
                case .triangle: inside = abs(dx) <= (dy + half) / 2  // apex up at the top middle, base along the bottom
                }
                if inside { pixels.append(y * canvasSide + x) }
            }
        }
        self.pixels = pixels
        centreX = pixels.map { Double($0 % canvasSide) + 0.5 }.reduce(0, +) / Double(pixels.count)
        centreY = pixels.map { Double($0 / canvasSide) + 0.5 }.reduce(0, +) / Double(pixels.count)
    }

    func distance(to other: SceneObject) -> Double {
        ((centreX - other.centreX) * (centreX - other.centreX) + (centreY - other.centreY) * (centreY - other.centreY)).squareRoot()
    }
}

public struct Scene: Sendable {
    /// One object per palette colour, in palette order.
    public let objects: [SceneObject]

    /// Object sizes (px) unless a data set asks for others: even, so a square or circle is
    /// centred on a pixel corner.
    public static let defaultSizes = [16, 18, 20]
    /// Whole-scene draws before a scene whose objects do not fit is given up.
    static let attemptsPerScene = 1_000
    /// The least gap, in pixels, between two objects' bounding boxes.
    static let gap = 4
    /// How far (px) an object's centre must be from the canvas's middle line, and how much
    /// nearer the nearest (or further the furthest) object must be than the runner-up, so that
    /// no answer hangs on a pixel.
    static let margin = 2.0

    /// A random scene of `objectCount` objects (1...6; all six colours, or that many distinct
    /// random ones in palette order), each of a size drawn from `sizes`: objects placed one by one
    /// at random free places; a scene where some object's nearest or furthest neighbour is not
    /// clear by `margin` is drawn again, and after `attemptsPerScene` draws the sizes are refused.
    public static func random(
        objectCount: Int = SceneColour.palette.count, sizes: [Int] = defaultSizes, using generator: inout SplitMix64
    ) throws(TaskDataError) -> Scene {
        precondition((1...SceneColour.palette.count).contains(objectCount), "a scene holds 1 to 6 objects")
        try checkObjectSizes(sizes)
        var colours = SceneColour.palette
        if objectCount < colours.count {
            let chosen = generator.shuffled(Array(colours.indices)).prefix(objectCount).sorted()
            colours = chosen.map { SceneColour.palette[$0] }
        }
        for _ in 0..<attemptsPerScene {
            if let scene = attempt(colours: colours, sizes: sizes, using: &generator), scene.hasClearNeighbours { return scene }
        }
        throw .objectsDoNotFit(count: objectCount, sizes: sizes, canvas: canvasSide)
    }

    /// Sizes an object can be drawn at: even, at least 8 px, and leaving a pixel on each side of the canvas.
    public static func checkObjectSizes(_ sizes: [Int]) throws(TaskDataError) {
        if let bad = sizes.first(where: { $0 % 2 != 0 || $0 < 8 || $0 > canvasSide - 4 }) {
            throw .badObjectSize(size: bad, largest: canvasSide - 4)
        }
        if sizes.isEmpty { throw .badObjectSize(size: nil, largest: canvasSide - 4) }
    }

    private static func attempt(colours: [SceneColour], sizes: [Int], using generator: inout SplitMix64) -> Scene? {
        var objects: [SceneObject] = []
        for colour in colours {
            var placed: SceneObject?
            for _ in 0..<200 where placed == nil {
                let size = generator.element(of: sizes)
                let candidate = SceneObject(
                    colour: colour, shape: generator.element(of: SceneShape.allCases),
                    left: 1 + generator.below(canvasSide - size - 1), top: 1 + generator.below(canvasSide - size - 1), size: size)
                let middle = Double(canvasSide) / 2
                let isClearOfMiddle = abs(candidate.centreX - middle) > margin && abs(candidate.centreY - middle) > margin
                if isClearOfMiddle && objects.allSatisfy({ !candidate.boxesOverlap($0, gap: gap) }) { placed = candidate }
            }
            guard let placed else { return nil }
            objects.append(placed)
        }
        return Scene(objects: objects)
    }

    /// Whether, for every object, the nearest and the furthest other object win by more than `margin`.
    var hasClearNeighbours: Bool {
        // With two objects each one's nearest is its furthest; with one there is no neighbour.
        objects.count < 3 || objects.allSatisfy { object in
            let distances = others(of: object).map { object.distance(to: $0) }.sorted()
            return distances[1] - distances[0] > Self.margin && distances[distances.count - 1] - distances[distances.count - 2] > Self.margin
        }
    }

    func others(of object: SceneObject) -> [SceneObject] { objects.filter { $0.colour != object.colour } }

    public func nearest(to object: SceneObject) -> SceneObject { others(of: object).min { object.distance(to: $0) < object.distance(to: $1) }! }
    public func furthest(from object: SceneObject) -> SceneObject { others(of: object).max { object.distance(to: $0) < object.distance(to: $1) }! }

    public var image: RGBImage {
        var pixels = RGBImage(width: canvasSide, height: canvasSide, filledWith: sceneBackground).pixels  // (112, 112, 3)
        for object in objects {
            for pixel in object.pixels {
                pixels[pixel * 3] = object.colour.red
                pixels[pixel * 3 + 1] = object.colour.green
                pixels[pixel * 3 + 2] = object.colour.blue
            }
        }
        return RGBImage(width: canvasSide, height: canvasSide, pixels: pixels)
    }

    /// Every question this scene answers, grouped by type in a fixed order.
    public var questionsByType: [[GeneratedQuestion]] {
        let middle = Double(canvasSide) / 2
        func about(_ object: SceneObject, _ category: String, _ text: String, _ answer: String, also: [SceneObject] = []) -> GeneratedQuestion {
            GeneratedQuestion(category: category, text: text, answer: answer, patches: patchIndices(coveringPixels: ([object] + also).flatMap(\.pixels)))
        }
        let shapes = objects.map { object in
            about(object, "shape", "What is the shape of the \(object.colour.name) object?", object.shape.rawValue)
        }
        let leftRight = objects.map { object in
            about(object, "left_right", "Is the \(object.colour.name) object on the left or the right?", object.centreX < middle ? "left" : "right")
        }
        let topBottom = objects.map { object in
            about(object, "top_bottom", "Is the \(object.colour.name) object at the top or the bottom?", object.centreY < middle ? "top" : "bottom")
        }
        // Relations need a second object.
        let related = objects.count > 1 ? objects : []
        let closestColour = related.map { object in
            let nearest = nearest(to: object)
            return about(object, "closest_colour", "What is the colour of the object closest to the \(object.colour.name) object?", nearest.colour.name, also: [nearest])
        }
        let furthestShape = related.map { object in
            let furthest = furthest(from: object)
            return about(object, "furthest_shape", "What is the shape of the object furthest from the \(object.colour.name) object?", furthest.shape.rawValue, also: [furthest])
        }
        let sameShapeCount = objects.map { object in
            let alike = others(of: object).filter { $0.shape == object.shape }
            return about(object, "same_shape_count", "How many objects have the same shape as the \(object.colour.name) object?", String(alike.count), also: alike)
        }
        let counts = SceneShape.allCases.map { shape in
            let matching = objects.filter { $0.shape == shape }
            return GeneratedQuestion(
                category: "count", text: "How many \(shape.rawValue)s are there?", answer: String(matching.count),
                patches: patchIndices(coveringPixels: matching.flatMap(\.pixels)))
        }
        return [shapes, leftRight, topBottom, closestColour, furthestShape, sameShapeCount, counts]
    }

    /// Every object in the palette's order: "red square left top, green circle right bottom, …"
    /// (its colour, shape, and the halves of the canvas its centre is in, as the questions say them).
    public var description: String {
        let middle = Double(canvasSide) / 2
        return SceneColour.palette.compactMap { colour in
            objects.first { $0.colour == colour }.map { object in
                "\(colour.name) \(object.shape.rawValue) \(object.centreX < middle ? "left" : "right") \(object.centreY < middle ? "top" : "bottom")"
            }
        }.joined(separator: ", ")
    }

    /// Image `index` of the scenes data set generated with `seed`, with `questionsPerImage`
    /// questions, of `objectCount` objects whose sizes are drawn from `objectSizes`.
    public static func generatedImage(
        seed: UInt32, index: UInt32, questionsPerImage: Int, objectCount: Int = SceneColour.palette.count,
        objectSizes: [Int] = defaultSizes
    ) throws(TaskDataError) -> GeneratedImage {
        var generator = imageGenerator(seed: seed, index: index)
        let scene = try Scene.random(objectCount: objectCount, sizes: objectSizes, using: &generator)
        let questions = try pickQuestions(from: scene.questionsByType, count: questionsPerImage, using: &generator)
        return GeneratedImage(
            name: imageName("scene", seed: seed, index: index), image: scene.image, questions: questions,
            description: ("Describe the objects.", scene.description))
    }
}

extension SceneObject {
    /// Whether the two bounding boxes, grown by `gap` pixels, touch.
    func boxesOverlap(_ other: SceneObject, gap: Int) -> Bool {
        left < other.left + other.size + gap && other.left < left + size + gap
            && top < other.top + other.size + gap && other.top < top + size + gap
    }
}
