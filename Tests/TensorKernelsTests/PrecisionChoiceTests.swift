import Foundation
import Testing
@testable import TensorKernels

/// `--precision auto`'s rule (#25): bf16 only where it was measured faster than float32 — AMX, or AVX-512 BF16 on
/// AMD — and the `/proc/cpuinfo` reading it rests on.
struct PrecisionChoiceTests {
    @Test func bf16IsChosenOnlyWhereItIsFaster() {
        // AMD Zen 4/5: bf16 1.7× faster than float32 (Ops/bench/README.md).
        #expect(ConvolutionPrecision.fasterBFloat16(isa: "avx512_core_bf16", vendor: "AuthenticAMD"))
        // Intel Xeon with AVX-512 BF16 but no AMX (#25's machine): bf16 1.7× slower.
        #expect(!ConvolutionPrecision.fasterBFloat16(isa: "avx512_core_bf16", vendor: "GenuineIntel"))
        #expect(ConvolutionPrecision.fasterBFloat16(isa: "avx512_core_amx", vendor: "GenuineIntel"))
        // Emulated bf16 (plain AVX-512), none at all (AVX2), or a vendor that cannot be read.
        #expect(!ConvolutionPrecision.fasterBFloat16(isa: "avx512_core", vendor: "AuthenticAMD"))
        #expect(!ConvolutionPrecision.fasterBFloat16(isa: "avx512_core_vnni", vendor: "GenuineIntel"))
        #expect(!ConvolutionPrecision.fasterBFloat16(isa: "avx2", vendor: "AuthenticAMD"))
        #expect(!ConvolutionPrecision.fasterBFloat16(isa: "avx512_core_bf16", vendor: nil))
    }

    @Test func cpuinfoFieldsComeFromTheFirstProcessor() throws {
        let text = """
        processor\t: 0
        vendor_id\t: GenuineIntel
        model name\t: Intel(R) Xeon(R) Processor
        flags\t\t: fpu vme avx512_bf16

        processor\t: 1
        vendor_id\t: AuthenticAMD
        """
        #expect(CPUIdentity.field("vendor_id", in: text) == "GenuineIntel")
        #expect(CPUIdentity.field("model name", in: text) == "Intel(R) Xeon(R) Processor")
        #expect(CPUIdentity.field("microcode", in: text) == nil)
        // This machine's own file (Linux is the only platform nnseg runs on), read the same way.
        let own = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        #expect(CPUIdentity.vendor == CPUIdentity.field("vendor_id", in: own))
    }
}
