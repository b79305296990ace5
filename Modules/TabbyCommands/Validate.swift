import ArgumentParser
import Foundation
import TabbyCore

/// `tabbyctl validate -f FILE|-`: checks manifests without writing anything.
public struct Validate: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Check manifests and print every problem.",
        discussion: """
            Reads YAML (several documents, or kind: List) or JSON, applies Calico's defaults and
            validation, and prints every problem as FILE:LINE:COLUMN: document N: FIELD: PROBLEM.
            Exits 0 when every resource is valid, 1 when any problem was found, 74 when a file
            cannot be read.
            """
    )

    @Option(name: [.short, .customLong("filename")], help: "A manifest file, or - for standard input. Repeatable.")
    var filenames: [String] = []

    @Flag(name: .shortAndLong, help: "Print nothing when valid.")
    var quiet = false

    public init() {}

    public func validate() throws {
        if filenames.isEmpty {
            throw ValidationError("give at least one manifest with -f FILE (or -f - for standard input)")
        }
    }

    public func run() throws {
        var problemCount = 0
        for filename in filenames {
            let text = try readManifest(filename)
            let manifest = Manifest(text: text, source: filename)
            for problem in manifest.problems {
                printError(problem.description)
            }
            problemCount += manifest.problems.count
            if manifest.isValid && !quiet {
                let summary = manifest.resources.map(\.description).joined(separator: ", ")
                print(
                    "\(filename): \(manifest.resources.count) valid resource(s)\(summary.isEmpty ? "" : ": \(summary)")"
                )
            }
        }
        if problemCount > 0 {
            printError("\(problemCount) problem(s) found")
            throw ExitStatus.invalidInput
        }
    }
}

/// Reads a manifest file, or standard input for `-`.
func readManifest(_ filename: String) throws -> String {
    if filename == "-" {
        let data = FileHandle.standardInput.readDataToEndOfFile()
        return String(decoding: data, as: UTF8.self)
    }
    do {
        let data = try Data(contentsOf: URL(fileURLWithPath: filename))
        guard let text = String(data: data, encoding: .utf8) else {
            printError("tabbyctl: \(filename): not UTF-8 text")
            throw ExitStatus.ioError
        }
        return text
    } catch let error as ExitCode {
        throw error
    } catch {
        let reason = (error as NSError).localizedFailureReason ?? error.localizedDescription
        printError("tabbyctl: cannot read \(filename): \(reason)")
        throw ExitStatus.ioError
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
