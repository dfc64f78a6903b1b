use tch::Tensor;
fn main() { let t = Tensor::from_slice(&[1f32, 2.0]); println!("{}", t.sum(tch::Kind::Float).double_value(&[])); }
