extension Array {
    /// Reads element `i` where it lies. `self[i]` hands back a copy, and a lane (a
    /// `ReplicaShard` of some forty stored properties) costs a memcpy and a retain per
    /// reference on every such read: the serving check of every request paid it. Traps,
    /// as `self[i]` does, when `i` is out of bounds.
    @inlinable
    func inPlace<T>(_ i: Int, _ body: (borrowing Element) throws -> T) rethrows -> T {
        try withUnsafeBufferPointer { try body($0[i]) }
    }
}
