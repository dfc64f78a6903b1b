//! Safetensors checkpoints, single or sharded, memory-mapped.
//!
//! [`Weights::open`] maps every shard once and reads only the headers; a tensor's bytes are copied
//! out of the map when [`Weights::get`] asks for it, converted to the wanted dtype and device. A
//! tensor that is absent or whose shape differs from what the config implies is an error naming the
//! tensor and both shapes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use super::error::{ModelError, Result, io_err};

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<i64>,
    start: usize,
    end: usize,
}

/// The tensors of one checkpoint (all its shards).
pub struct Weights {
    maps: Vec<Mmap>,
    paths: Vec<PathBuf>,
    entries: HashMap<String, Entry>,
}

impl Weights {
    /// Opens the checkpoint in a model folder: `model.safetensors.index.json` (sharded), else
    /// `model.safetensors`, else every `*.safetensors` in the folder.
    pub fn open(dir: &Path) -> Result<Weights> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::Safetensors { path: index.clone(), message: format!("not JSON: {e}") })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::Safetensors {
                path: index.clone(),
                message: "no `weight_map` object".into(),
            })?;
            let mut shards: Vec<String> = map.values().filter_map(|s| s.as_str().map(str::to_string)).collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else if dir.join("model.safetensors").exists() {
            vec![dir.join("model.safetensors")]
        } else {
            let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io_err(dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            all.sort();
            all
        };
        if files.is_empty() {
            return Err(ModelError::Safetensors {
                path: dir.to_path_buf(),
                message: "no model.safetensors, no model.safetensors.index.json, no *.safetensors".into(),
            });
        }
        Weights::open_files(&files)
    }

    /// Opens the given safetensors files as one checkpoint.
    pub fn open_files(files: &[PathBuf]) -> Result<Weights> {
        let mut w = Weights { maps: vec![], paths: vec![], entries: HashMap::new() };
        for path in files {
            let file = File::open(path).map_err(io_err(path))?;
            // SAFETY: the map is read-only and lives as long as `Weights`; checkpoints are not
            // modified while a model reads them.
            let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
            let bad = |e: safetensors::SafeTensorError| ModelError::Safetensors { path: path.clone(), message: e.to_string() };
            let (n, meta) = SafeTensors::read_metadata(&map).map_err(bad)?;
            let base = 8 + n;
            for (name, info) in meta.tensors() {
                let (s, e) = info.data_offsets;
                w.entries.insert(
                    name,
                    Entry {
                        file: w.maps.len(),
                        dtype: info.dtype,
                        shape: info.shape.iter().map(|&d| d as i64).collect(),
                        start: base + s,
                        end: base + e,
                    },
                );
            }
            w.maps.push(map);
            w.paths.push(path.clone());
        }
        Ok(w)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        v.sort();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The stored shape of a tensor.
    pub fn shape(&self, name: &str) -> Option<&[i64]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    fn where_(&self) -> String {
        match self.paths.as_slice() {
            [one] => one.display().to_string(),
            many => format!("{} shards in {}", many.len(), many[0].parent().unwrap_or(Path::new(".")).display()),
        }
    }

    /// A tensor of exactly `shape`, as `kind` on `device`.
    pub fn get(&self, name: &str, shape: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.to_string(), where_: self.where_() })?;
        if e.shape != shape {
            return Err(ModelError::TensorShape { name: name.to_string(), expected: shape.to_vec(), found: e.shape.clone() });
        }
        self.load(name, kind, device)
    }

    /// A tensor as stored (any shape), as `kind` on `device`.
    pub fn load(&self, name: &str, kind: Kind, device: Device) -> Result<Tensor> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.to_string(), where_: self.where_() })?;
        let stored = match e.dtype {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            other => return Err(ModelError::TensorDtype { name: name.to_string(), dtype: format!("{other:?}") }),
        };
        let bytes = &self.maps[e.file][e.start..e.end];
        let t = Tensor::f_from_data_size(bytes, &e.shape, stored)?;
        Ok(t.f_to_kind(kind)?.f_to_device(device)?.detach())
    }
}

/// Writes tensors to a safetensors file (f32/f16/bf16 kept as they are), atomically.
pub fn save(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    let named: Vec<(&str, Tensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t.detach().to_device(Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&named, &tmp)?;
    // libtorch creates the file with the process umask: narrow it before it takes its name.
    keel_trajectory::private::restrict(&tmp).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}
