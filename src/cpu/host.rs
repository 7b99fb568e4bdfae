//! A tensor's f32 values on the host for the CPU kernels: borrowed from flex's storage when the
//! tensor is a contiguous flex f32 tensor (no copy), copied otherwise.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::module::Param;
use burn::tensor::{DType, Tensor};

/// The values of a tensor (autodiff tensors are read through their inner tensor).
#[derive(Clone)]
pub enum HostF32 {
    /// Borrowed from the flex storage (keeps its Arc alive).
    Flex(FlexTensor),
    /// Copied (a view, another layout or another dtype).
    Owned(Vec<f32>),
}

impl HostF32 {
    /// The values of `t`, borrowed where they can be, copied otherwise.
    pub fn new<const D: usize>(t: Tensor<D>) -> Self {
        Self::borrow(t.clone()).unwrap_or_else(|_| {
            Self::Owned(
                t.inner()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("converted to f32"),
            )
        })
    }

    /// The values of `t` borrowed from flex's storage, or why they cannot be. For callers that
    /// must not copy: the backbone's weights are packed once and recognised later by the
    /// address of their storage.
    pub fn borrow<const D: usize>(t: Tensor<D>) -> Result<Self, &'static str> {
        let f = t
            .inner()
            .try_into_primitive::<Flex>()
            .map_err(|_| "not a flex tensor")?;
        if f.dtype() != DType::F32 {
            return Err("not f32");
        }
        if !f.is_contiguous() || f.layout().start_offset() != 0 {
            return Err("not contiguous");
        }
        Ok(Self::Flex(f))
    }

    /// [`HostF32::borrow`] on a parameter's value.
    pub fn param<const D: usize>(p: &Param<Tensor<D>>) -> Result<Self, &'static str> {
        Self::borrow(p.val())
    }

    pub fn f32(&self) -> &[f32] {
        match self {
            Self::Flex(f) => &f.storage::<f32>()[..f.layout().num_elements()],
            Self::Owned(v) => v,
        }
    }
}
