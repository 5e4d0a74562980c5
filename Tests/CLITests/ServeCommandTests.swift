import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import TestSupport

/// `pdrop serve` as a user starts it: bad flags refused, then a server on a free port that loads,
/// answers, and stops cleanly on Ctrl-C.
@Suite struct ServeCommandTests {
    let model = Fixtures.url("tiny-llava").path

    @Test(arguments: [
        (["--parallel", "0"], "--parallel"),
        (["--max-queue", "-1"], "--max-queue"),
        (["--template", "alpaca"], "--template"),
        (["--media-path", "/nonexistent/images"], "--media-path"),
        (["--port", "70000"], "--port"),
        // Checked against the model once it is loaded: the process ends with the reason.
        (["--reduction", "fastv", "--layers", "2", "--port", "0"], "schedule"),
        (["--layers", "2,40", "--ratios", "0.5,0.25", "--port", "0"], "layer"),
    ])
    func badFlagsAreRefused(flags: [String], named: String) throws {
        let run = try runPDrop(["serve", "--model", model] + flags)
        #expect(run.status != 0 && run.stderr.contains(named), "\(run.stderr)")
    }

    /// One request over HTTP; the response's status and body.
    func request(_ url: URL, body: Data? = nil) -> (status: Int, body: String) {
        var request = URLRequest(url: url)
        if let body {
            request.httpMethod = "POST"
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        nonisolated(unsafe) var result = (status: 0, body: "")
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, _ in
            result = ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data ?? Data(), as: UTF8.self))
            done.signal()
        }.resume()
        done.wait()
        return result
    }

    @Test func aServerStartsAnswersAndStopsOnInterrupt() throws {
        let errors = Pipe()
        let child = try ChildProcess(pdropExecutable, ["serve", "--model", model, "--port", "0", "--alias", "tiny"], standardError: errors)
        defer { if !child.hasExited { kill(child.identifier, SIGKILL) } }
        // The first line names the port.
        var firstLine = Data()
        while !firstLine.contains(UInt8(ascii: "\n")) {
            let byte = errors.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty { break }
            firstLine += byte
        }
        let line = String(decoding: firstLine, as: UTF8.self)
        let port = try #require(line.split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) }, "\(line)")
        let base = URL(string: "http://127.0.0.1:\(port)")!
        let deadline = Date().addingTimeInterval(60)
        while request(base.appendingPathComponent("health")).status != 200 && Date() < deadline { usleep(50_000) }
        #expect(request(base.appendingPathComponent("v1/models")).body.contains("\"id\":\"tiny\""))
        let body = #"{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3, "temperature": 0}"#
        let answer = request(base.appendingPathComponent("v1/chat/completions"), body: Data(body.utf8))
        #expect(answer.status == 200 && answer.body.contains("\"completion_tokens\":3"), "\(answer)")
        kill(child.identifier, SIGINT)
        #expect(child.waitForExit() == 0)
    }
}
