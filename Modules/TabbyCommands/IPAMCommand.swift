import ArgumentParser
import Foundation
import TabbyCore
import TabbyIPAM
import TabbyStore

/// `tabbyctl ipam show|check|release`
public struct IPAMCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ipam",
        abstract: "Show IP address usage, find leaked addresses and release them.",
        subcommands: [Show.self, Check.self, Release.self]
    )

    public init() {}

    static func open(_ datastore: DatastoreOptions) throws -> IPAM {
        IPAM(store: try datastore.openClient().store)
    }

    static func fail(_ error: any Error) -> ExitCode {
        printError("tabbyctl: \(error)")
        return ExitStatus.invalidInput
    }

    /// `tabbyctl ipam show [--show-blocks] [--show-borrowed]`
    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "Show address usage per pool (and per block).")
        @Flag(help: "Also list each block: its node and how many addresses are in use.")
        var showBlocks = false
        @Flag(help: "Also list addresses allocated from another node's block.")
        var showBorrowed = false
        @OptionGroup var datastore: DatastoreOptions
        public init() {}

        public func run() async throws {
            let ipam = try IPAMCommand.open(datastore)
            let pools: [PoolUsage]
            do { pools = try await ipam.usage() } catch { throw IPAMCommand.fail(error) }
            var rows = [["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"]]
            for pool in pools {
                let percent = pool.size > 0 ? Double(pool.allocated) * 100 / Double(pool.size) : 0
                rows.append([
                    "IP Pool \(pool.name)\(pool.disabled ? " (disabled)" : "")", pool.cidr.description, "\(pool.size)",
                    "\(pool.allocated) (\(Int(percent.rounded()))%)", "\(pool.size - UInt128(pool.allocated))",
                ])
                if showBlocks {
                    for block in pool.blocks {
                        rows.append([
                            "Block \(block.node.map { "(\($0))" } ?? "(no owner)")", block.cidr.description,
                            "\(block.size)",
                            "\(block.allocated)", "\(block.size - block.allocated)",
                        ])
                    }
                }
            }
            print(table(rows))
            if showBorrowed {
                let borrowed = pools.flatMap { pool in
                    pool.blocks.flatMap { block in
                        block.borrowed.map { "\($0) from block \(block.cidr) of \(block.node ?? "no node")" }
                    }
                }
                print(
                    borrowed.isEmpty
                        ? "No borrowed addresses."
                        : "Borrowed addresses:\n" + borrowed.map { "  \($0)" }.joined(separator: "\n"))
            }
        }
    }

    /// `tabbyctl ipam check [-o text|json] [--grace-period 15m] [--output-file F]`
    public struct Check: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Find leaked and duplicate addresses and orphaned blocks and affinities.",
            discussion: """
                An address is leaked when no workload endpoint (or node tunnel) uses it and it was
                allocated longer ago than the grace period. Exits 0 when all is consistent, 1 when
                problems were found. Free what it found with: tabbyctl ipam release --from-report FILE
                """
        )
        enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }
        @Option(name: .shortAndLong, help: "text or json.")
        var output: Format = .text
        @Option(help: "Also write the JSON report to this file (for ipam release --from-report).")
        var outputFile: String?
        @Option(help: "How long an unused allocation may exist before it counts as leaked: 90s, 15m, 1h.")
        var gracePeriod: String = "15m"
        @OptionGroup var datastore: DatastoreOptions
        public init() {}

        public func validate() throws {
            guard parseDuration(gracePeriod) != nil else {
                throw ValidationError("--grace-period \"\(gracePeriod)\": use a number with s, m or h, e.g. 15m")
            }
        }

        public func run() async throws {
            let ipam = try IPAMCommand.open(datastore)
            let report: IPAMReport
            do { report = try await ipam.check(gracePeriod: parseDuration(gracePeriod)!) } catch {
                throw IPAMCommand.fail(error)
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let json = String(decoding: try encoder.encode(report), as: UTF8.self) + "\n"
            if let outputFile {
                do { try Data(json.utf8).write(to: URL(fileURLWithPath: outputFile)) } catch {
                    printError("tabbyctl: cannot write \(outputFile): \(error.localizedDescription)")
                    throw ExitStatus.ioError
                }
            }
            switch output {
            case .json: print(json, terminator: "")
            case .text: print(Self.text(report), terminator: "")
            }
            if !report.isClean { throw ExitStatus.invalidInput }
        }

        static func text(_ report: IPAMReport) -> String {
            var lines = [
                "Checked \(report.allocatedAddresses) allocated address(es) (grace period \(report.gracePeriodSeconds)s)."
            ]
            func section<T>(_ title: String, _ items: [T], _ line: (T) -> String) {
                lines.append("\(title): \(items.count)")
                lines += items.map { "  " + line($0) }
            }
            section("Leaked addresses", report.leaked) {
                "\($0.ip) handle \($0.handle) node \($0.node ?? "-") pod \($0.namespace ?? "-")/\($0.pod ?? "-"): \($0.reason)"
            }
            section("Unused, within the grace period", report.unusedWithinGracePeriod) {
                "\($0.ip) handle \($0.handle)"
            }
            section("Addresses used by several endpoints", report.duplicates) {
                "\($0.ip): \($0.endpoints.joined(separator: ", "))"
            }
            section("Addresses in use but not allocated", report.inUseButNotAllocated) { "\($0.ip): \($0.endpoint)" }
            section("Blocks without an owner", report.orphanBlocks) { "\($0.cidr): \($0.reason)" }
            section("Affinities without a node or block", report.orphanAffinities) {
                "\($0.cidr) of \($0.node): \($0.reason)"
            }
            lines.append(
                report.isClean
                    ? "IPAM is consistent."
                    : "Problems found; release leaked addresses with: tabbyctl ipam release --from-report FILE")
            return lines.joined(separator: "\n") + "\n"
        }
    }

    /// `tabbyctl ipam release --ip A [--ip B]` or `--from-report FILE`
    public struct Release: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Free addresses: given ones, or the leaks a check report lists.",
            discussion: """
                With --from-report, each leaked address is released only if it is still held by
                the same handle and still unused, so an old report cannot free an address a new
                pod has since been given.
                """
        )
        @Option(name: .customLong("ip"), help: "An address to release. Repeatable.")
        var addresses: [String] = []
        @Option(help: "A JSON report written by tabbyctl ipam check --output-file.")
        var fromReport: String?
        @OptionGroup var datastore: DatastoreOptions
        public init() {}

        public func validate() throws {
            if addresses.isEmpty == (fromReport == nil) {
                throw ValidationError("give --ip ADDRESS or --from-report FILE")
            }
            for text in addresses where IPAddress(text) == nil {
                throw ValidationError("--ip \"\(text)\" is not an IP address")
            }
        }

        public func run() async throws {
            let ipam = try IPAMCommand.open(datastore)
            let released: [IPAddress]
            if let fromReport {
                let report: IPAMReport
                do {
                    report = try JSONDecoder().decode(
                        IPAMReport.self, from: Data(contentsOf: URL(fileURLWithPath: fromReport)))
                } catch {
                    printError("tabbyctl: cannot read the report \(fromReport): \(error)")
                    throw ExitStatus.invalidInput
                }
                do { released = try await ipam.releaseLeaks(in: report) } catch { throw IPAMCommand.fail(error) }
                let skipped = report.leaked.count - released.count
                print(
                    "Released \(released.count) leaked address(es)\(skipped > 0 ? "; \(skipped) skipped (in use again or already free)" : "")."
                )
            } else {
                let wanted = addresses.compactMap { IPAddress($0) }
                do { released = try await ipam.release(addresses: wanted) } catch { throw IPAMCommand.fail(error) }
                for address in wanted where !released.contains(address) { printError("\(address) was not allocated") }
                print("Released \(released.count) address(es).")
                if released.count < wanted.count { throw ExitStatus.invalidInput }
            }
            for address in released.sorted() { print("  \(address)") }
        }
    }
}

/// `90s`, `15m`, `1h` or plain seconds.
func parseDuration(_ text: String) -> Duration? {
    let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600]
    if let unit = text.last, let scale = units[unit], let value = Int64(text.dropLast()), value >= 0 {
        return .seconds(value * scale)
    }
    return Int64(text).flatMap { $0 >= 0 ? .seconds($0) : nil }
}

/// Left-aligned columns, as calicoctl prints them.
func table(_ rows: [[String]]) -> String {
    guard let width = rows.map(\.count).max() else { return "" }
    var widths = Array(repeating: 0, count: width)
    for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
    return rows.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 3, withPad: " ", startingAt: 0)
        }.joined()
    }.joined(separator: "\n")
}
