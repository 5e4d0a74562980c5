import FileAccess
import Foundation
import TensorCore

/// All safetensors files of a checkpoint directory, as one name → tensor map.
///
/// Finds `model.safetensors`, or the shards listed by `model.safetensors.index.json`, or else
/// every `*.safetensors` file in the directory. A tensor name in two files is an error.
public final class Checkpoint: @unchecked Sendable {
    public let directory: URL
    public let files: [SafeTensorsFile]
    /// Tensor name → the file that holds it.
    private let fileForTensor: [String: SafeTensorsFile]

    public var tensorNames: [String] { fileForTensor.keys.sorted() }

    public init(directory: URL) throws {
        self.directory = directory
        let manager = FileManager.default
        let single = directory.appendingPathComponent("model.safetensors")
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        var shardNames: [String]
        var indexMap: [String: String]? = nil
        if manager.fileExists(atPath: single.path) {
            shardNames = ["model.safetensors"]
        } else if manager.fileExists(atPath: index.path) {
            let map = try Checkpoint.readIndex(index)
            indexMap = map
            shardNames = Array(Set(map.values)).sorted()
        } else {
            let contents = (try? manager.contentsOfDirectory(atPath: directory.path)) ?? []
            shardNames = contents.filter { $0.hasSuffix(".safetensors") }.sorted()
        }
        if shardNames.isEmpty { throw SafeTensorsError.noSafetensorsFiles(directory: directory.path) }

        let opened = try shardNames.map { try SafeTensorsFile(path: directory.appendingPathComponent($0).path) }
        var owner: [String: SafeTensorsFile] = [:]
        for file in opened {
            for name in file.entries.keys {
                if let previous = owner[name] {
                    throw SafeTensorsError.duplicateTensor(tensor: name, files: [previous.path, file.path])
                }
                owner[name] = file
            }
        }
        if let indexMap {
            // The index and the shards must agree: every listed tensor is in its listed shard.
            for (name, shard) in indexMap.sorted(by: { $0.key < $1.key }) {
                guard let file = owner[name], URL(fileURLWithPath: file.path).lastPathComponent == shard else {
                    throw SafeTensorsError.invalidShardIndex(
                        file: index.path, reason: "tensor '\(name)' is listed in shard '\(shard)' but is not there")
                }
            }
        }
        files = opened
        fileForTensor = owner
    }

    /// The `weight_map` of a shard index.
    static func readIndex(_ url: URL) throws -> [String: String] {
        struct ShardIndex: Decodable {
            let weightMap: [String: String]
            enum CodingKeys: String, CodingKey { case weightMap = "weight_map" }
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SafeTensorsError.cannotOpen(file: url.path, reason: describeFoundationError(error))
        }
        do {
            let map = try JSONDecoder().decode(ShardIndex.self, from: data).weightMap
            if let bad = map.values.first(where: { $0.contains("/") || !$0.hasSuffix(".safetensors") }) {
                throw SafeTensorsError.invalidShardIndex(file: url.path, reason: "shard name '\(bad)' is not a .safetensors file in this directory")
            }
            return map
        } catch let error as SafeTensorsError {
            throw error
        } catch {
            throw SafeTensorsError.invalidShardIndex(file: url.path, reason: describeDecodingError(error))
        }
    }

    public func contains(_ name: String) -> Bool { fileForTensor[name] != nil }

    public func entry(_ name: String) throws -> SafeTensorsEntry {
        try file(holding: name).entry(name)
    }

    public func floatTensor(_ name: String) throws -> Tensor {
        try file(holding: name).floatTensor(name)
    }

    public func file(holding name: String) throws -> SafeTensorsFile {
        guard let file = fileForTensor[name] else {
            throw SafeTensorsError.tensorNotFound(file: directory.path, tensor: name)
        }
        return file
    }
}
