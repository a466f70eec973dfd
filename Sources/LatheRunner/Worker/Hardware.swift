import Foundation
import LatheSpec

/// One NVIDIA GPU as `nvidia-smi` reports it.
public struct GPU: Codable, Sendable, Hashable {
    /// The index in `/dev/nvidiaN`.
    public var index: Int
    public var uuid: String
    /// The marketing name, e.g. "NVIDIA A100-SXM4-80GB".
    public var model: String
    public var memoryMiB: Int

    public init(index: Int, uuid: String, model: String, memoryMiB: Int) {
        self.index = index
        self.uuid = uuid
        self.model = model
        self.memoryMiB = memoryMiB
    }

    enum CodingKeys: String, CodingKey {
        case index, uuid, model
        case memoryMiB = "memory_mib"
    }

    /// The SKU this GPU is offered as: `gpu-` and its model in lowercase words
    /// ("NVIDIA A100-SXM4-80GB" → `gpu-a100-sxm4-80gb`).
    public var sku: String {
        var words = model.lowercased().split { !$0.isLetter && !$0.isNumber }.map(String.init)
        while let first = words.first, ["nvidia", "tesla", "geforce"].contains(first) { words.removeFirst() }
        return "gpu-" + (words.isEmpty ? "unknown" : words.joined(separator: "-"))
    }
}

/// What a worker machine offers: its CPUs, memory, GPUs and the SKUs it serves.
public struct HardwareInventory: Codable, Sendable, Hashable {
    public var cpus: Int
    public var memoryBytes: Int64
    public var gpus: [GPU]
    /// Labels the operator gave this worker (`--hardware cpu-large`); `cpu` when none.
    public var labels: [String]

    public init(cpus: Int, memoryBytes: Int64, gpus: [GPU], labels: [String]) {
        self.cpus = cpus
        self.memoryBytes = memoryBytes
        self.gpus = gpus
        self.labels = labels
    }

    enum CodingKeys: String, CodingKey {
        case cpus, gpus, labels
        case memoryBytes = "memory_bytes"
    }

    /// A hardware SKU: 1–64 lowercase ASCII letters, digits and '-', starting with a letter.
    public static func isValidSKU(_ text: String) -> Bool {
        guard let first = text.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first), text.utf8.count <= 64 else { return false }
        return text.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }
    }

    /// Every SKU this machine serves: the operator's labels (or `cpu`) and one per GPU model.
    public var skus: [String] {
        var result = labels.isEmpty ? ["cpu"] : labels
        for gpu in gpus where !result.contains(gpu.sku) { result.append(gpu.sku) }
        return result
    }

    /// Where the GPUs' device nodes are on this host: `/dev`, or `LATHE_GPU_DEVICE_DIR` (set by
    /// the operator for an unusual host, and by the tests, which give fake nodes and a fake
    /// `nvidia-smi`). Inside a sandbox they are always `/dev/nvidiaN`.
    public static var deviceDirectory: String {
        ProcessInfo.processInfo.environment["LATHE_GPU_DEVICE_DIR"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/dev"
    }

    /// This machine as it is: processors, physical memory and NVIDIA GPUs (when `/dev/nvidia0`
    /// exists and `nvidia-smi` answers).
    public static func detect(labels: [String]) -> HardwareInventory {
        var gpus: [GPU] = []
        if FileManager.default.fileExists(atPath: deviceDirectory + "/nvidia0"), let smi = try? ChildProcess.resolve("nvidia-smi"),
           let result = try? ChildProcess.run(smi, ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]),
           result.status == 0 {
            gpus = parseNvidiaSMI(String(decoding: result.stdout, as: UTF8.self))
        }
        return HardwareInventory(cpus: ProcessInfo.processInfo.activeProcessorCount,
                                 memoryBytes: Int64(clamping: ProcessInfo.processInfo.physicalMemory), gpus: gpus, labels: labels)
    }

    /// Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`;
    /// lines that do not have four fields with a numeric index are skipped.
    public static func parseNvidiaSMI(_ text: String) -> [GPU] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 4, let index = Int(fields[0]), index >= 0, index < 1024, fields[1].hasPrefix("GPU-") else { return nil }
            return GPU(index: index, uuid: fields[1], model: fields[2], memoryMiB: Int(fields[3]) ?? 0)
        }
    }
}

/// Whole GPUs given to one sandboxed instance.
public struct GPUAccess: Sendable, Hashable {
    /// Device nodes bound into the sandbox (the GPUs' own, then the driver's control nodes).
    public var devices: [String]
    /// Variables the model's process gets (`CUDA_VISIBLE_DEVICES` by UUID).
    public var environment: [String: String]

    /// The driver's nodes every CUDA process opens besides its GPUs' own.
    public static let controlNodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]

    /// The host's node behind a sandbox's `/dev/…` path (see ``HardwareInventory/deviceDirectory``).
    public static func hostPath(_ device: String) -> String {
        HardwareInventory.deviceDirectory + "/" + (device.split(separator: "/").last.map(String.init) ?? device)
    }

    /// What an instance given `gpus` sees: only their `/dev/nvidiaN` nodes plus the control
    /// nodes that `exists` confirms, and `CUDA_VISIBLE_DEVICES` naming them by UUID (so the
    /// numbering inside cannot point at another instance's GPU). A pure function of its inputs.
    public static func forInstance(_ gpus: [GPU], exists: (String) -> Bool = { FileManager.default.fileExists(atPath: GPUAccess.hostPath($0)) }) -> GPUAccess {
        guard !gpus.isEmpty else { return GPUAccess(devices: [], environment: [:]) }
        let sorted = gpus.sorted { $0.index < $1.index }
        let own = sorted.map { "/dev/nvidia\($0.index)" }
        let control = controlNodes.filter(exists)
        return GPUAccess(devices: own + control,
                         environment: ["CUDA_VISIBLE_DEVICES": sorted.map(\.uuid).joined(separator: ","), "NVIDIA_VISIBLE_DEVICES": "void"])
    }
}
