#if EBPF
    import Testing
    @testable import TabbyEBPF

    /// The embedded tc object is built CO-RE against the running kernel's vmlinux.h: its `.BTF.ext`
    /// section must carry CO-RE relocation records (field accesses libbpf resolves at load). A
    /// program built against UAPI headers alone has none.
    @Suite struct BPFObjectCORETests {
        /// The bytes of the named section of a little-endian ELF64 file.
        static func section(_ name: String, of elf: [UInt8]) -> ArraySlice<UInt8>? {
            func u16(_ at: Int) -> Int { Int(elf[at]) | Int(elf[at + 1]) << 8 }
            func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
            func u64(_ at: Int) -> Int { u32(at) | u32(at + 4) << 32 }
            guard elf.count > 64, elf[0..<4] == [0x7f, 0x45, 0x4c, 0x46], elf[4] == 2, elf[5] == 1 else {
                return nil
            }
            let table = u64(0x28)
            let entrySize = u16(0x3a)
            let count = u16(0x3c)
            let names = table + u16(0x3e) * entrySize
            let namesOffset = u64(names + 0x18)
            for index in 0..<count {
                let header = table + index * entrySize
                var end = namesOffset + u32(header)
                while elf[end] != 0 { end += 1 }
                let sectionName = String(decoding: elf[(namesOffset + u32(header))..<end], as: UTF8.self)
                if sectionName == name {
                    let offset = u64(header + 0x18)
                    return elf[offset..<offset + u64(header + 0x20)]
                }
            }
            return nil
        }

        /// The number of CO-RE relocation records in a `.BTF.ext` section (its header: magic 0xeb9f,
        /// version, flags, header length, then func_info, line_info and core_relo offset/length pairs).
        static func coreRelocationCount(_ ext: ArraySlice<UInt8>) -> Int? {
            let bytes = Array(ext)
            func u32(_ at: Int) -> Int {
                Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
            }
            guard bytes.count >= 32, bytes[0] == 0x9f, bytes[1] == 0xeb else { return nil }
            let headerLength = u32(4)
            guard headerLength >= 32 else { return 0 }
            let start = headerLength + u32(24)
            let length = u32(28)
            guard length > 0 else { return 0 }
            let recordSize = u32(start)
            var position = start + 4
            var total = 0
            while position < start + length {
                let records = u32(position + 4)
                total += records
                position += 8 + records * recordSize
            }
            return total
        }

        @Test func theTcObjectCarriesCORERelocations() throws {
            let elf = BPFObjectFiles.tabbyTc
            let ext = try #require(Self.section(".BTF.ext", of: elf), "the tc object has no .BTF.ext section")
            let relocations = try #require(Self.coreRelocationCount(ext))
            // 34 when written: the context's data pointers and every packet header field read.
            #expect(relocations >= 10, "only \(relocations) CO-RE relocations: is the program built against vmlinux.h?")
        }
    }
#endif
