import TensorCore

/// Keys (after RoPE) and values of one decoder layer, for every token the layer has seen.
/// Layers keep their own lengths, so a pruned layer's cache can be shorter than its neighbours'.
public final class LayerKVCache {
    /// Width of one row: key/value heads × head_dim.
    public let rowWidth: Int
    public private(set) var length: Int = 0
    public private(set) var capacity: Int
    /// (capacity, rowWidth); rows 0..<length are valid.
    public private(set) var keys: UnsafeMutablePointer<Float>
    /// (capacity, rowWidth); rows 0..<length are valid.
    public private(set) var values: UnsafeMutablePointer<Float>

    public init(rowWidth: Int, capacity: Int) {
        self.rowWidth = rowWidth
        self.capacity = max(capacity, 1)
        keys = .allocate(capacity: self.capacity * rowWidth)
        values = .allocate(capacity: self.capacity * rowWidth)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Appends newKeys(count, rowWidth) and newValues(count, rowWidth), growing geometrically.
    public func append(keys newKeys: UnsafePointer<Float>, values newValues: UnsafePointer<Float>, count: Int) {
        reserve(length + count)
        (keys + length * rowWidth).update(from: newKeys, count: count * rowWidth)
        (values + length * rowWidth).update(from: newValues, count: count * rowWidth)
        length += count
    }

    public func reserve(_ rows: Int) {
        if rows <= capacity { return }
        let newCapacity = max(rows, capacity * 2)
        let newKeys = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * rowWidth)
        let newValues = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * rowWidth)
        newKeys.update(from: keys, count: length * rowWidth)
        newValues.update(from: values, count: length * rowWidth)
        keys.deallocate()
        values.deallocate()
        keys = newKeys
        values = newValues
        capacity = newCapacity
    }

    public func removeAll() { length = 0 }
}

/// One `LayerKVCache` per decoder layer.
public final class KVCache {
    public let layers: [LayerKVCache]

    public init(layerCount: Int, rowWidth: Int, capacity: Int) {
        layers = (0..<layerCount).map { _ in LayerKVCache(rowWidth: rowWidth, capacity: capacity) }
    }

    /// Bytes held by valid rows (keys and values, fp32).
    public var usedBytes: Int { layers.reduce(0) { $0 + 2 * $1.length * $1.rowWidth * MemoryLayout<Float>.size } }
}
