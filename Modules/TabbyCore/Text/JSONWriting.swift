/// Compact JSON text with sorted keys, written directly. The CNI plugin answers every ADD with
/// JSON; Foundation's `JSONSerialization` took about 1.7 ms per answer there (its first use sets
/// up bridging), this takes microseconds (docs/benchmarks.md).
extension JSONValue {
    /// `{"a":1,"b":[true,null]}`: no whitespace, keys sorted, `/` not escaped, non-finite
    /// doubles written as `null` (JSON has no NaN or infinity).
    public func serialized() -> String {
        var output = ""
        write(to: &output)
        return output
    }

    public func write(to output: inout String) {
        switch self {
        case .null: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .int(let number): output += String(number)
        case .double(let number):
            if !number.isFinite {
                output += "null"
            } else if number == number.rounded(.towardZero), abs(number) < 1e15 {
                output += String(Int64(number))
            } else {
                output += "\(number)"
            }
        case .string(let text): Self.writeString(text, to: &output)
        case .array(let items):
            output += "["
            for (index, item) in items.enumerated() {
                if index > 0 { output += "," }
                item.write(to: &output)
            }
            output += "]"
        case .object(let entries):
            output += "{"
            for (index, key) in entries.keys.sorted().enumerated() {
                if index > 0 { output += "," }
                Self.writeString(key, to: &output)
                output += ":"
                entries[key]!.write(to: &output)
            }
            output += "}"
        }
    }

    /// A JSON string literal: `"`, `\` and control characters escaped, everything else as is.
    public static func writeString(_ text: String, to output: inout String) {
        output += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "\u{08}": output += "\\b"
            case "\u{0C}": output += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: output.unicodeScalars.append(scalar)
            }
        }
        output += "\""
    }
}
