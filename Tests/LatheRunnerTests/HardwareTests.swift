import Foundation
import Testing
@testable import LatheRunner

@Suite("hardware: GPU inventory, SKUs and what an instance's sandbox gets")
struct HardwareTests {
    let smi = """
        0, GPU-8a1f3c52-1111-2222-3333-444455556666, NVIDIA A100-SXM4-80GB, 81920
        1, GPU-9b2e4d63-aaaa-bbbb-cccc-ddddeeeeffff, NVIDIA A100-SXM4-80GB, 81920
        2, GPU-0c3f5e74-0000-1111-2222-333344445555, Tesla T4, 15360
        not a line
        x, GPU-bad, NVIDIA L4, 23034
        3, no-uuid, NVIDIA L4, 23034
        """

    @Test("nvidia-smi's CSV parses into GPUs; malformed lines are skipped")
    func parse() {
        let gpus = HardwareInventory.parseNvidiaSMI(smi)
        #expect(gpus.map(\.index) == [0, 1, 2])
        #expect(gpus[0] == GPU(index: 0, uuid: "GPU-8a1f3c52-1111-2222-3333-444455556666", model: "NVIDIA A100-SXM4-80GB", memoryMiB: 81920))
        #expect(gpus[2].model == "Tesla T4" && gpus[2].memoryMiB == 15360)
        #expect(HardwareInventory.parseNvidiaSMI("").isEmpty)
    }

    @Test("SKUs: the operator's labels (cpu by default) and one per GPU model")
    func skus() {
        let gpus = HardwareInventory.parseNvidiaSMI(smi)
        #expect(gpus[0].sku == "gpu-a100-sxm4-80gb" && gpus[2].sku == "gpu-t4")
        #expect(HardwareInventory(cpus: 8, memoryBytes: 1, gpus: [], labels: []).skus == ["cpu"])
        #expect(HardwareInventory(cpus: 8, memoryBytes: 1, gpus: gpus, labels: ["cpu-large"]).skus == ["cpu-large", "gpu-a100-sxm4-80gb", "gpu-t4"])
    }

    @Test("an instance sees only its own GPUs' nodes, the driver's control nodes that exist, and their UUIDs")
    func access() {
        let gpus = HardwareInventory.parseNvidiaSMI(smi)
        let present: Set<String> = ["/dev/nvidiactl", "/dev/nvidia-uvm"]
        let given = GPUAccess.forInstance([gpus[1], gpus[0]]) { present.contains($0) }
        #expect(given.devices == ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"])
        #expect(given.environment["CUDA_VISIBLE_DEVICES"] == "GPU-8a1f3c52-1111-2222-3333-444455556666,GPU-9b2e4d63-aaaa-bbbb-cccc-ddddeeeeffff")
        #expect(!given.devices.contains("/dev/nvidia2"))
        let none = GPUAccess.forInstance([]) { _ in true }
        #expect(none.devices.isEmpty && none.environment.isEmpty)
    }

    @Test("the sandbox binds exactly those device nodes")
    func sandboxArguments() {
        let sandbox = Sandbox(bwrap: "/usr/bin/bwrap", network: false)
        let mounts = Sandbox.Mounts(project: URL(fileURLWithPath: "/tmp/project"), readOnly: [], writable: [])
        let arguments = sandbox.arguments(mounts: mounts, environment: [:], command: ["python3"], devices: ["/dev/nvidia1", "/dev/nvidiactl"])
        var binds: [String] = []
        for (index, argument) in arguments.enumerated() where argument == "--dev-bind" { binds.append(arguments[index + 1]) }
        #expect(binds == ["/dev/nvidia1", "/dev/nvidiactl"])
        // After the minimal /dev, so they are not covered by it.
        let dev = arguments.firstIndex(of: "--dev")!
        #expect(arguments.firstIndex(of: "--dev-bind")! > dev)
        #expect(!sandbox.arguments(mounts: mounts, environment: [:], command: ["python3"]).contains("--dev-bind"))
    }
}
