//! A tensor's f32 values on the host for the CPU kernels: borrowed from flex's storage when the
//! tensor is a contiguous flex f32 tensor (no copy), copied otherwise.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor};

/// The values of a tensor (autodiff tensors are read through their inner tensor).
pub enum HostF32 {
    /// Borrowed from the flex storage (keeps its Arc alive).
    Flex(FlexTensor),
    /// Copied (a view, another layout or another dtype).
    Owned(Vec<f32>),
}

impl HostF32 {
    /// The values of `t`, borrowed where they can be.
    pub fn new<const D: usize>(t: Tensor<D>) -> Self {
        let t = t.inner();
        match t.clone().try_into_primitive::<Flex>() {
            Ok(f)
                if f.dtype() == DType::F32
                    && f.is_contiguous()
                    && f.layout().start_offset() == 0 =>
            {
                Self::Flex(f)
            }
            _ => Self::Owned(
                t.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("converted to f32"),
            ),
        }
    }

    pub fn f32(&self) -> &[f32] {
        match self {
            Self::Flex(f) => &f.storage::<f32>()[..f.layout().num_elements()],
            Self::Owned(v) => v,
        }
    }
}
