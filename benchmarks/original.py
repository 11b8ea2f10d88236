"""BASELINE: the Part 1 seed notebook's training code, copied verbatim in behaviour.

This module is the thing measured, not course code: ``benchmarks/`` times it against
``fusionlab`` (see ``benchmarks/bench_loop.py``). It is the seed notebook
(``000_208f3dca72d90eb9``) cell by cell: the per-sample ``MultimodalDataset`` drawn from the
global RNG, ``DataLoader`` with per-sample items and the default collate, the three models, and
``train_model`` (Adam 1e-3, batch 64, 30 epochs, a test pass after every epoch). The class and
function bodies below are the notebook's, character for character (kept out of the formatter
and the linter); the functions at the end replay the notebook's other cells in order. Do not
"improve" this file: its slowness is the point.
"""

# ruff: noqa
# fmt: off
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')


# ----------------------------------------------------------------------------- section 4.1
class MultimodalDataset(Dataset):
    """
    Synthetic multimodal dataset for comparing fusion strategies.

    Creates paired (image_features, text_features, label) samples where:
    - Class 0: image features are centered around [1, 0, ...], text around [0, 1, ...]
    - Class 1: image features are centered around [0, 1, ...], text around [1, 0, ...]
    - Class 2: label depends on INTERACTION between image and text features

    Class 2 is the key: it requires cross-modal reasoning to classify correctly.
    """
    def __init__(self, n_samples=3000, img_dim=32, txt_dim=16, noise=0.3):
        self.n_samples = n_samples
        self.img_dim = img_dim
        self.txt_dim = txt_dim

        self.img_features = torch.zeros(n_samples, img_dim)
        self.txt_features = torch.zeros(n_samples, txt_dim)
        self.labels = torch.zeros(n_samples, dtype=torch.long)

        n_per_class = n_samples // 3

        # Class 0: image pattern A + text pattern A
        for i in range(n_per_class):
            self.img_features[i] = torch.randn(img_dim) * noise + torch.tensor([1.0] + [0.0]*(img_dim-1))
            self.txt_features[i] = torch.randn(txt_dim) * noise + torch.tensor([0.0, 1.0] + [0.0]*(txt_dim-2))
            self.labels[i] = 0

        # Class 1: image pattern B + text pattern B
        for i in range(n_per_class, 2*n_per_class):
            self.img_features[i] = torch.randn(img_dim) * noise + torch.tensor([0.0, 1.0] + [0.0]*(img_dim-2))
            self.txt_features[i] = torch.randn(txt_dim) * noise + torch.tensor([1.0] + [0.0]*(txt_dim-1))
            self.labels[i] = 1

        # Class 2: requires cross-modal interaction (image[0] * text[0] > 0.5)
        for i in range(2*n_per_class, n_samples):
            img = torch.randn(img_dim) * noise
            txt = torch.randn(txt_dim) * noise
            # Make the interaction signal clear
            img[0] = torch.randn(1).abs() + 0.5
            txt[0] = torch.randn(1).abs() + 0.5
            self.img_features[i] = img
            self.txt_features[i] = txt
            self.labels[i] = 2

    def __len__(self):
        return self.n_samples

    def __getitem__(self, idx):
        return self.img_features[idx], self.txt_features[idx], self.labels[idx]


# ----------------------------------------------------------------------------- section 4.2
class EarlyFusionModel(nn.Module):
    """
    Early Fusion: Concatenate features first, then process jointly.

    Architecture:
        [img_features ; txt_features] -> MLP -> output
    """
    def __init__(self, img_dim=32, txt_dim=16, hidden_dim=64, num_classes=3):
        super().__init__()
        self.fusion = nn.Sequential(
            nn.Linear(img_dim + txt_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden_dim, num_classes)
        )

    def forward(self, img_feat, txt_feat):
        combined = torch.cat([img_feat, txt_feat], dim=-1)
        return self.fusion(combined)


# ----------------------------------------------------------------------------- section 4.3
class LateFusionModel(nn.Module):
    """
    Late Fusion: Process each modality independently, combine at the end.

    Architecture:
        img_features -> img_encoder -> img_embed
        txt_features -> txt_encoder -> txt_embed
        [img_embed ; txt_embed] -> fusion_head -> output
    """
    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
        super().__init__()
        self.img_encoder = nn.Sequential(
            nn.Linear(img_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, embed_dim)
        )
        self.txt_encoder = nn.Sequential(
            nn.Linear(txt_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, embed_dim)
        )
        self.fusion_head = nn.Sequential(
            nn.Linear(embed_dim * 2, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, num_classes)
        )

    def forward(self, img_feat, txt_feat):
        img_embed = self.img_encoder(img_feat)
        txt_embed = self.txt_encoder(txt_feat)
        combined = torch.cat([img_embed, txt_embed], dim=-1)
        return self.fusion_head(combined)


# ----------------------------------------------------------------------------- section 4.4
class CrossAttentionLayer(nn.Module):
    """
    Cross-attention: text queries attend to visual keys/values.

    Q = W_q * text_features
    K = W_k * img_features
    V = W_v * img_features
    output = softmax(Q K^T / sqrt(d_k)) V
    """
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5

        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query, kv):
        """
        query: (B, N_q, dim) - from text modality
        kv: (B, N_kv, dim) - from visual modality
        """
        B, N_q, D = query.shape
        _, N_kv, _ = kv.shape

        # Project queries, keys, values
        q = self.q_proj(query).reshape(B, N_q, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(kv).reshape(B, N_kv, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(kv).reshape(B, N_kv, self.num_heads, self.head_dim).transpose(1, 2)

        # Attention scores
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = F.softmax(attn, dim=-1)

        # Weighted sum of values
        out = attn @ v
        out = out.transpose(1, 2).reshape(B, N_q, D)

        # Store attention weights for visualization
        self.last_attn_weights = attn.detach()

        return self.out_proj(out)

class CrossAttentionFusionModel(nn.Module):
    """
    Cross-Attention Fusion: text features query visual features via attention.
    """
    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_heads=4, num_classes=3):
        super().__init__()
        # Project both modalities to same dimension
        self.img_proj = nn.Linear(img_dim, embed_dim)
        self.txt_proj = nn.Linear(txt_dim, embed_dim)

        # Cross-attention: text queries, visual keys/values
        self.cross_attn = CrossAttentionLayer(embed_dim, num_heads)
        self.norm = nn.LayerNorm(embed_dim)

        # Classification head
        self.classifier = nn.Sequential(
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, num_classes)
        )

    def forward(self, img_feat, txt_feat):
        # Project to shared dimension and add sequence dimension
        img_embed = self.img_proj(img_feat).unsqueeze(1)  # (B, 1, embed_dim)
        txt_embed = self.txt_proj(txt_feat).unsqueeze(1)  # (B, 1, embed_dim)

        # Cross-attention: text queries attend to visual features
        attn_out = self.cross_attn(txt_embed, img_embed)
        fused = self.norm(txt_embed + attn_out)  # Residual connection

        # Pool and classify
        pooled = fused.squeeze(1)  # (B, embed_dim)
        return self.classifier(pooled)


# ----------------------------------------------------------------------------- section 6
def train_model(model, train_loader, test_loader, epochs=30, lr=1e-3):
    """Train a multimodal model and track metrics."""
    optimizer = optim.Adam(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()

    train_losses = []
    test_accs = []

    for epoch in range(epochs):
        model.train()
        epoch_loss = 0
        for img, txt, labels in train_loader:
            img, txt, labels = img.to(device), txt.to(device), labels.to(device)

            optimizer.zero_grad()
            output = model(img, txt)
            loss = criterion(output, labels)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item()

        train_losses.append(epoch_loss / len(train_loader))

        # Evaluate
        model.eval()
        correct = 0
        total = 0
        with torch.no_grad():
            for img, txt, labels in test_loader:
                img, txt, labels = img.to(device), txt.to(device), labels.to(device)
                output = model(img, txt)
                _, predicted = torch.max(output, 1)
                total += labels.size(0)
                correct += (predicted == labels).sum().item()

        acc = correct / total
        test_accs.append(acc)

        if (epoch + 1) % 10 == 0:
            print(f"  Epoch {epoch+1:3d}: Loss={train_losses[-1]:.4f}, Acc={acc:.4f}")

    return train_losses, test_accs


# ----------------------------------------------------------------------------- the notebook's cells

MODELS = {
    "early": EarlyFusionModel,
    "late": LateFusionModel,
    "cross_attention": CrossAttentionFusionModel,
}


def seed_notebook(SEED=42):
    """The setup cells: seed random, NumPy and torch (the notebook seeds twice)."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(SEED)
    torch.manual_seed(SEED)
    np.random.seed(SEED)


def make_loaders():
    """Section 4.1: the datasets (global RNG, one sample at a time) and the DataLoaders."""
    train_dataset = MultimodalDataset(n_samples=3000)
    test_dataset = MultimodalDataset(n_samples=600)
    train_loader = DataLoader(train_dataset, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_dataset, batch_size=64, shuffle=False)
    return train_loader, test_loader


def build_display_models():
    """Sections 4.2-4.4 build one instance of each model to print it: this draws from the
    global RNG before training, so it is replayed for the training runs' initial weights."""
    models = [cls().to(device) for cls in MODELS.values()]
    # section 5's check cell builds GatedFusionModel(), whose two projections draw too
    nn.Linear(32, 32), nn.Linear(16, 32)
    return models
