import ArgumentParser
import Engine
import Foundation
import Hummingbird
import Serving

/// `pdrop serve`: OpenAI's chat-completions API over HTTP, PyramidDrop per request.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a checkpoint over HTTP with OpenAI's chat-completions API (PyramidDrop per request).",
        discussion: """
            Endpoints: POST /v1/chat/completions (text and image_url parts, streaming, and the \
            extension fields pyramid_drop, fastv and reduction), GET /v1/models, GET /health (503 \
            while the model loads), GET /metrics (Prometheus). The reduction flags set the default of \
            requests that name none. docs/SERVING.md has examples.
            """)

    @Option(help: "Checkpoint directory.")
    var model: String

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port).")
    var port = 8080

    @Option(help: "Model name that /v1/models lists and responses carry (default: the checkpoint directory's name).")
    var alias: String?

    @Option(help: "Conversation template: \(ConversationTemplate.all.map(\.name).joined(separator: ", ")).\(templateDefaultHelp)")
    var template: String?

    @Option(help: "Requests decoded together in one batched step.")
    var parallel = 4

    @Option(help: "Requests that may wait for a decode slot; more are refused with 503.")
    var maxQueue = 64

    @Option(help: "Require 'Authorization: Bearer KEY' (every endpoint but /health).")
    var apiKey: String?

    @Option(help: "Directory under which file:// image URLs may be read (none: file URLs are refused).")
    var mediaPath: String?

    @Option(help: "Images per request at most.")
    var maxImages = 4

    @Option(help: "Request body size limit in bytes (413 above).")
    var maxBodyBytes = 32 << 20

    @Option(help: "Pixels per image at most (413 above).")
    var maxImagePixels = 50_000_000

    @OptionGroup var reductionOptions: ReductionOptions
    @OptionGroup var computeOptions: ComputeOptions

    func validate() throws {
        if parallel < 1 { throw ValidationError("--parallel must be at least 1, got \(parallel)") }
        if maxQueue < 0 { throw ValidationError("--max-queue must not be negative, got \(maxQueue)") }
        if maxImages < 0 || maxBodyBytes < 1 || maxImagePixels < 1 {
            throw ValidationError("--max-images, --max-body-bytes and --max-image-pixels must be positive")
        }
        if !(0...65_535).contains(port) { throw ValidationError("--port must be in 0...65535, got \(port)") }
        if let template, ConversationTemplate.named(template) == nil {
            throw ValidationError("--template '\(template)' is unknown; choose from \(ConversationTemplate.all.map(\.name).joined(separator: ", "))")
        }
        if let mediaPath {
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: mediaPath, isDirectory: &isDirectory) || !isDirectory.boolValue {
                throw ValidationError("--media-path \(mediaPath) is not a directory")
            }
        }
    }

    func run() throws {
        computeOptions.apply()
        let directory = URL(fileURLWithPath: model)
        let options = ServerOptions(
            modelName: alias ?? directory.standardizedFileURL.lastPathComponent, defaultReduction: try reductionOptions.request(),
            parallel: parallel, maxQueue: maxQueue, apiKey: apiKey,
            media: MediaPolicy(mediaPath: mediaPath.map { URL(fileURLWithPath: $0) }, maxImages: maxImages),
            maxBodyBytes: maxBodyBytes, maxImagePixels: maxImagePixels)
        let served = ServedModel()
        let template = template.flatMap(ConversationTemplate.named)
        let app = makeApplication(model: served, options: options, host: host, port: port) { channel in
            let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
            FileHandle.standardError.write(Data("pdrop serve: listening on http://\(address) (loading \(directory.path))\n".utf8))
            // Loading is not the server's work: /health answers 503 meanwhile.
            Thread.detachNewThread {
                do {
                    try served.load(directory: directory, template: template, options: options)
                    FileHandle.standardError.write(Data("pdrop serve: \(options.modelName) ready\n".utf8))
                } catch {
                    FileHandle.standardError.write(Data("error: \(userMessage(for: error))\n".utf8))
                    Foundation.exit(1)
                }
            }
        }
        let finished = DispatchSemaphore(value: 0)
        let failure = LockedError()
        Task {
            do {
                try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
            } catch {
                failure.set(error)
            }
            served.shutdown()
            finished.signal()
        }
        finished.wait()
        if let error = failure.get() {
            FileHandle.standardError.write(Data("error: \(userMessage(for: error))\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// An error handed from the server's task to the command's thread.
final class LockedError: @unchecked Sendable {
    private let lock = NSLock()
    private var error: (any Error)?
    func set(_ error: any Error) { lock.withLock { self.error = error } }
    func get() -> (any Error)? { lock.withLock { error } }
}
